package protocolo.interop;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.Future;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Publishes one complete contact and a retrieval request by CPF, as an outside (non-Python)
 * producer would: built from the .avsc files and docs/wire-contract.md only.
 *
 * <pre>
 * ContactProducer --bootstrap HOST:PORT --topic T --schemas schemas/avro --protocol 15DIGITS
 *                 --opened-at-micros N --index-key-base64 K --cpf CPF --customer-code C --name NAME
 *                 [--data-key-ref UUID --data-key-hex 64HEX]
 * </pre>
 *
 * The customer is identified by blind indexes computed here with the JDK's HMAC (the route
 * every outside producer has). With a data key (handed out by the vault's owner), the
 * ContactOpened also carries the customer sealed here with the JDK's AES-GCM. Prints one
 * JSON line per record the broker confirmed.
 */
public final class ContactProducer {
    private static final long SECOND = 1_000_000L;
    private static final String PRODUCER = "java-interop";
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path schemas;
    private final String protocol;
    private final List<Outgoing> outgoing = new ArrayList<>();

    private record Outgoing(String eventType, String eventId, String key, byte[] value) {}

    private ContactProducer(Path schemas, String protocol) {
        this.schemas = schemas;
        this.protocol = protocol;
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = Args.parse(args);
        ContactProducer p = new ContactProducer(Path.of(Args.required(opts, "schemas")), Args.required(opts, "protocol"));
        byte[] indexKey = Base64.getDecoder().decode(Args.required(opts, "index-key-base64"));
        String cpf = Contract.cpfDigits(Args.required(opts, "cpf"));
        String code = Args.required(opts, "customer-code");
        String cpfIndex = Contract.cpfIndex(indexKey, cpf);
        String codeIndex = Contract.customerCodeIndex(indexKey, code);
        long t0 = Long.parseLong(Args.required(opts, "opened-at-micros"));

        // ContactOpened: indexes always; sealed personal data only with a data key.
        String openedId = UUID.randomUUID().toString();
        GenericRecord opened = p.record("ContactOpened", openedId, t0, p.protocol);
        opened.put("channel", p.symbol(opened, "channel", "PHONE"));
        opened.put("direction", p.symbol(opened, "direction", "INBOUND"));
        opened.put("service_type", p.symbol(opened, "service_type", "MOBILE"));
        GenericRecord customer = new GenericData.Record(nonNull(opened.getSchema().getField("customer").schema()));
        customer.put("cpf_index", cpfIndex);
        customer.put("customer_code_index", codeIndex);
        customer.put("sealed", null);
        if (opts.containsKey("data-key-ref")) {
            byte[] dataKey = Contract.HEX.parseHex(Args.required(opts, "data-key-hex"));
            byte[] nonce = new byte[Contract.NONCE_BYTES];
            new SecureRandom().nextBytes(nonce);
            byte[] plaintext = Contract.sealedPlaintext(cpf, code, opts.get("name"));
            GenericRecord sealed = new GenericData.Record(nonNull(customer.getSchema().getField("sealed").schema()));
            sealed.put("key_ref", opts.get("data-key-ref"));
            sealed.put("nonce", java.nio.ByteBuffer.wrap(nonce));
            sealed.put("ciphertext", java.nio.ByteBuffer.wrap(Contract.seal(dataKey, nonce, plaintext, openedId)));
            customer.put("sealed", sealed);
        }
        opened.put("customer", customer);
        opened.put("agent_id", "ag-java-17");
        opened.put("subject", "Cobrança em duplicidade (produtor Java)");
        opened.put("recorded", true);
        if (opened.getSchema().getField("language") != null) {
            opened.put("language", "pt-BR");
        }
        p.add(opened);

        GenericRecord told = p.record("DisclosureMade", UUID.randomUUID().toString(), t0 + 5 * SECOND, p.protocol);
        told.put("kind", p.symbol(told, "kind", "PROTOCOL_NUMBER"));
        told.put("medium", p.symbol(told, "medium", "VOICE"));
        p.add(told);

        GenericRecord notice = p.record("DisclosureMade", UUID.randomUUID().toString(), t0 + 8 * SECOND, p.protocol);
        notice.put("kind", p.symbol(notice, "kind", "RECORDING_NOTICE"));
        notice.put("medium", p.symbol(notice, "medium", "IVR_PROMPT"));
        p.add(notice);

        String recordingId = "rec-java-" + p.protocol;
        GenericRecord recording = p.record("RecordingCaptured", UUID.randomUUID().toString(), t0 + 540 * SECOND, p.protocol);
        recording.put("recording_id", recordingId);
        recording.put("media_uri", "s3://recordings/java/" + recordingId + ".opus");
        recording.put("sha256", Contract.HEX.formatHex(MessageDigest.getInstance("SHA-256")
                .digest(("audio of " + recordingId).getBytes(StandardCharsets.UTF_8))));
        recording.put("duration_ms", 531_480L);
        recording.put("retention_profile", "br-anatel-rgc");
        recording.put("retention_days", 180);
        p.add(recording);

        GenericRecord closed = p.record("ContactClosed", UUID.randomUUID().toString(), t0 + 542 * SECOND, p.protocol);
        closed.put("outcome", p.symbol(closed, "outcome", "RESOLVED"));
        closed.put("summary", "Estorno aprovado.");
        p.add(closed);

        // A retrieval request by CPF: no protocol number, keyed by its request id, indexes only.
        GenericRecord request = p.record("RetrievalRequested", UUID.randomUUID().toString(), t0 + 600 * SECOND, null);
        request.put("request_id", UUID.randomUUID().toString());
        request.put("kind", p.symbol(request, "kind", "RECORDING"));
        GenericRecord who = new GenericData.Record(nonNull(request.getSchema().getField("customer").schema()));
        who.put("cpf_index", cpfIndex);
        who.put("customer_code_index", null);
        who.put("sealed", null);
        request.put("customer", who);
        request.put("window_from", t0 - 86_400 * SECOND);
        request.put("window_to", t0 + 86_400 * SECOND);
        request.put("requested_via", p.symbol(request, "requested_via", "PHONE"));
        request.put("delivery_channel", p.symbol(request, "delivery_channel", "EMAIL"));
        p.add(request);

        p.publish(Args.required(opts, "bootstrap"), Args.required(opts, "topic"));
    }

    private static Schema nonNull(Schema schema) {
        if (schema.getType() != Schema.Type.UNION) {
            return schema;
        }
        return schema.getTypes().stream().filter(s -> s.getType() != Schema.Type.NULL).findFirst().orElseThrow();
    }

    private GenericRecord record(String eventType, String eventId, long occurredAtMicros, String protocolNumber)
            throws Exception {
        Schema schema = Contract.schema(schemas, eventType, Contract.currentVersion(schemas, eventType));
        GenericRecord record = new GenericData.Record(schema);
        GenericRecord meta = new GenericData.Record(schema.getField("meta").schema());
        meta.put("event_id", eventId);
        meta.put("protocol_number", protocolNumber);
        meta.put("occurred_at", occurredAtMicros);
        meta.put("producer", PRODUCER);
        meta.put("correlation_id", null);
        record.put("meta", meta);
        return record;
    }

    private GenericData.EnumSymbol symbol(GenericRecord record, String field, String symbol) {
        Schema enumSchema = record.getSchema().getField(field).schema();
        if (!enumSchema.hasEnumSymbol(symbol)) {
            throw new IllegalArgumentException(symbol + " is not a symbol of " + field);
        }
        return new GenericData.EnumSymbol(enumSchema, symbol);
    }

    private void add(GenericRecord record) throws Exception {
        String eventType = record.getSchema().getName();
        String eventId = ((GenericRecord) record.get("meta")).get("event_id").toString();
        outgoing.add(new Outgoing(eventType, eventId, Contract.kafkaKey(record), Contract.encode(record.getSchema(), record)));
    }

    private void publish(String bootstrap, String topic) throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60_000);
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (Outgoing o : outgoing) {
                ProducerRecord<byte[], byte[]> record =
                        new ProducerRecord<>(topic, o.key().getBytes(StandardCharsets.UTF_8), o.value());
                for (Map.Entry<String, byte[]> h : Contract.headers(o.eventType(), o.eventId())) {
                    record.headers().add(h.getKey(), h.getValue());
                }
                sent.add(producer.send(record));
            }
            producer.flush();
            for (int i = 0; i < outgoing.size(); i++) {
                RecordMetadata md = sent.get(i).get();
                Outgoing o = outgoing.get(i);
                ObjectNode line = JSON.createObjectNode();
                line.put("event_type", o.eventType());
                line.put("event_id", o.eventId());
                line.put("key", o.key());
                line.put("partition", md.partition());
                line.put("offset", md.offset());
                line.put("value_hex", Contract.HEX.formatHex(o.value()));
                System.out.println(JSON.writeValueAsString(line));
            }
        }
    }
}
