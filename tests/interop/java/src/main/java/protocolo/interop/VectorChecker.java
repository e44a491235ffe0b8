package protocolo.interop;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.MissingSchemaException;

/**
 * Checks every committed vector (schemas/vectors) with the Apache Avro Java library and the
 * JDK's HMAC and AES-GCM, and decodes records the Python publisher wrote.
 *
 * <pre>
 * VectorChecker --schemas schemas/avro --vectors schemas/vectors [--python-records FILE]
 * </pre>
 *
 * Prints "ok ..." per check passed and "FAIL ..." per mismatch (exit 1 if any); for each
 * line of FILE ({"value_hex": ...}) prints a "decoded {json}" line with what Java read.
 */
public final class VectorChecker {
    private static final ObjectMapper JSON = new ObjectMapper().enable(DeserializationFeature.USE_LONG_FOR_INTS);
    private final Path schemas;
    private final List<String> failures = new ArrayList<>();
    private int checks;

    private VectorChecker(Path schemas) {
        this.schemas = schemas;
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = Args.parse(args);
        VectorChecker checker = new VectorChecker(Path.of(opts.get("schemas")));
        Path vectors = Path.of(opts.get("vectors"));
        try (Stream<Path> files = Files.list(vectors)) {
            List<Path> eventFiles = files.filter(p -> p.getFileName().toString().matches(".+\\.v\\d+\\.json"))
                    .sorted().toList();
            if (eventFiles.isEmpty()) {
                checker.fail("no event vectors in " + vectors);
            }
            for (Path file : eventFiles) {
                checker.checkEventVector(file);
            }
        }
        JsonNode personal = JSON.readTree(vectors.resolve("personal-data.json").toFile());
        checker.checkPersonalData(personal);
        checker.checkSealedEventVectors(vectors, personal);
        if (opts.containsKey("python-records")) {
            checker.decodePythonRecords(Path.of(opts.get("python-records")));
        }
        System.out.println("checks " + checker.checks + " failures " + checker.failures.size());
        System.exit(checker.failures.isEmpty() ? 0 : 1);
    }

    private void check(boolean ok, String what) {
        checks++;
        if (ok) {
            System.out.println("ok " + what);
        } else {
            fail(what);
        }
    }

    private void fail(String what) {
        failures.add(what);
        System.out.println("FAIL " + what);
    }

    private void checkEventVector(Path file) throws Exception {
        String name = file.getFileName().toString();
        JsonNode v = JSON.readTree(file.toFile());
        String type = v.get("event_type").asText();
        int version = v.get("version").asInt();
        Schema schema = Contract.schema(schemas, type, version);
        check(v.get("schema_file").asText().equals(type + "/v" + version + ".avsc"), name + " schema_file");
        check(SchemaNormalization.toParsingForm(schema).equals(v.get("schema_canonical_form").asText()),
                name + " canonical form");
        String fpHex = v.get("schema_fingerprint_hex").asText();
        check(Contract.HEX.formatHex(SchemaNormalization.parsingFingerprint("CRC-64-AVRO", schema)).equals(fpHex),
                name + " fingerprint (parsingFingerprint)");
        check(Contract.HEX.formatHex(Contract.wireFingerprint(schema)).equals(fpHex),
                name + " fingerprint (parsingFingerprint64, little-endian)");
        byte[] bytes = Contract.HEX.parseHex(v.get("single_object_hex").asText());
        check(Contract.HEX.formatHex(Arrays.copyOf(bytes, 10)).equals("c301" + fpHex), name + " header");

        GenericRecord decoded = new BinaryMessageDecoder<GenericRecord>(GenericData.get(), schema).decode(bytes);
        check(PlainJson.fromAvro(schema, decoded).equals(v.get("record")), name + " decodes to record");
        byte[] encoded = Contract.encode(schema, (GenericRecord) PlainJson.toAvro(schema, v.get("record")));
        check(Arrays.equals(encoded, bytes), name + " record encodes to single_object_hex"
                + (Arrays.equals(encoded, bytes) ? "" : " (Java: " + Contract.HEX.formatHex(encoded) + ")"));
        check(Contract.kafkaKey(decoded).equals(v.get("kafka_key").asText()), name + " kafka_key");
        String eventId = ((GenericRecord) decoded.get("meta")).get("event_id").toString();
        List<List<String>> headers = new ArrayList<>();
        for (Map.Entry<String, byte[]> h : Contract.headers(type, eventId)) {
            headers.add(List.of(h.getKey(), new String(h.getValue(), StandardCharsets.UTF_8)));
        }
        check(JSON.valueToTree(headers).equals(v.get("kafka_headers")), name + " kafka_headers");

        // A reader on the newest version of the type resolves this writer by fingerprint.
        Schema current = Contract.schema(schemas, type, Contract.currentVersion(schemas, type));
        BinaryMessageDecoder<GenericRecord> resolving = new BinaryMessageDecoder<>(GenericData.get(), current);
        resolving.addSchema(schema);
        GenericRecord resolved = resolving.decode(bytes);
        check(resolved.getSchema().equals(current) && resolved.get("meta").equals(decoded.get("meta")),
                name + " resolves into v" + Contract.currentVersion(schemas, type));
        // ... and a flipped fingerprint byte is an unknown writer, never a misread.
        byte[] flipped = bytes.clone();
        flipped[9] ^= 0x01;
        boolean refused = false;
        try {
            resolving.decode(flipped);
        } catch (MissingSchemaException e) {
            refused = true;
        }
        check(refused, name + " unknown fingerprint refused");
    }

    private void checkPersonalData(JsonNode personal) throws Exception {
        byte[] indexKey = Contract.HEX.parseHex(personal.get("index_key_hex").asText());
        check(Arrays.equals(indexKey, java.util.Base64.getDecoder().decode(personal.get("index_key_base64").asText())),
                "personal-data index key hex = base64");
        for (JsonNode c : personal.get("blind_index")) {
            String kind = c.get("kind").asText();
            String input = c.get("input").asText();
            String value = kind.equals("cpf") ? Contract.cpfDigits(input) : input.strip();
            check((kind + ":" + value).equals(c.get("message").asText()), "blind index message " + c.get("message"));
            check(Contract.blindIndex(indexKey, kind, value).equals(c.get("index_hex").asText()),
                    "blind index " + c.get("message"));
        }
        for (JsonNode c : personal.get("sealing")) {
            String label = "sealing '" + c.get("label").asText() + "'";
            JsonNode clear = c.get("clear");
            String cpf = clear.get("cpf").isNull() ? null : Contract.cpfDigits(clear.get("cpf").asText());
            String code = clear.get("customer_code").isNull() ? null : clear.get("customer_code").asText();
            String name = clear.get("name").isNull() ? null : clear.get("name").asText();
            byte[] plaintext = Contract.sealedPlaintext(cpf, code, name);
            check(Contract.HEX.formatHex(plaintext).equals(c.get("plaintext_hex").asText()), label + " plaintext bytes");
            byte[] key = Contract.HEX.parseHex(c.get("data_key_hex").asText());
            byte[] nonce = Contract.HEX.parseHex(c.get("nonce_hex").asText());
            String eventId = c.get("event_id").asText();
            check(Contract.HEX.formatHex(eventId.getBytes(StandardCharsets.UTF_8)).equals(c.get("associated_data_hex").asText()),
                    label + " associated data");
            byte[] sealed = Contract.seal(key, nonce, plaintext, eventId);
            check(Contract.HEX.formatHex(sealed).equals(c.get("ciphertext_hex").asText()), label + " ciphertext (JDK AES-GCM)");
            byte[] opened = Contract.open(key, nonce, Contract.HEX.parseHex(c.get("ciphertext_hex").asText()), eventId);
            check(Arrays.equals(opened, plaintext), label + " opens (JDK AES-GCM)");
            check(c.get("cpf_index").isNull() ? cpf == null
                    : Contract.blindIndex(indexKey, "cpf", cpf).equals(c.get("cpf_index").asText()), label + " cpf_index");
            check(c.get("customer_code_index").isNull() ? code == null
                    : Contract.customerCodeIndex(indexKey, code).equals(c.get("customer_code_index").asText()),
                    label + " customer_code_index");
        }
    }

    private void checkSealedEventVectors(Path vectors, JsonNode personal) throws Exception {
        byte[] indexKey = Contract.HEX.parseHex(personal.get("index_key_hex").asText());
        JsonNode first = personal.get("sealing").get(0);
        byte[] key = Contract.HEX.parseHex(first.get("data_key_hex").asText());
        for (String name : List.of("ContactOpened.v1.json", "RetrievalRequested.v1.json")) {
            JsonNode record = JSON.readTree(vectors.resolve(name).toFile()).get("record");
            JsonNode customer = record.get("customer");
            JsonNode sealed = customer.get("sealed");
            byte[] plain = Contract.open(key, Contract.HEX.parseHex(sealed.get("nonce").asText()),
                    Contract.HEX.parseHex(sealed.get("ciphertext").asText()), record.get("meta").get("event_id").asText());
            JsonNode clear = JSON.readTree(plain);
            check(Contract.blindIndex(indexKey, "cpf", clear.get("cpf").asText()).equals(customer.get("cpf_index").asText())
                    && Contract.customerCodeIndex(indexKey, clear.get("customer_code").asText())
                    .equals(customer.get("customer_code_index").asText()),
                    name + " sealed customer opens and matches its indexes");
        }
    }

    private void decodePythonRecords(Path file) throws Exception {
        Map<String, Schema> byFingerprint = new HashMap<>();
        Map<String, String> typeOf = new HashMap<>();
        try (Stream<Path> dirs = Files.list(schemas)) {
            for (Path dir : dirs.filter(Files::isDirectory).toList()) {
                String type = dir.getFileName().toString();
                for (int v = 1; v <= Contract.currentVersion(schemas, type); v++) {
                    Schema s = Contract.schema(schemas, type, v);
                    String fp = Contract.HEX.formatHex(Contract.wireFingerprint(s));
                    byFingerprint.put(fp, s);
                    typeOf.put(fp, type + " " + v);
                }
            }
        }
        for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
            if (line.isBlank()) {
                continue;
            }
            byte[] bytes = Contract.HEX.parseHex(JSON.readTree(line).get("value_hex").asText());
            String fp = Contract.HEX.formatHex(Arrays.copyOfRange(bytes, 2, 10));
            Schema writer = byFingerprint.get(fp);
            if (writer == null) {
                fail("python record with unknown fingerprint " + fp);
                continue;
            }
            GenericRecord record = new BinaryMessageDecoder<GenericRecord>(GenericData.get(), writer).decode(bytes);
            ObjectNode out = JSON.createObjectNode();
            String[] typeVersion = typeOf.get(fp).split(" ");
            out.put("event_type", typeVersion[0]);
            out.put("version", Integer.parseInt(typeVersion[1]));
            out.put("kafka_key", Contract.kafkaKey(record));
            out.set("record", PlainJson.fromAvro(writer, record));
            checks++;
            System.out.println("decoded " + JSON.writeValueAsString(out));
        }
    }
}
