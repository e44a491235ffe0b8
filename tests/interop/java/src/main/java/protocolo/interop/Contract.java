package protocolo.interop;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import javax.crypto.Cipher;
import javax.crypto.Mac;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageEncoder;

/**
 * The wire contract of docs/wire-contract.md, written from that document and the .avsc
 * files only: schemas, single-object encoding, Kafka key and headers, blind index and the
 * personal-data sealing format. Nothing here is generated from the Python code.
 */
public final class Contract {
    public static final HexFormat HEX = HexFormat.of();
    public static final int NONCE_BYTES = 12;
    public static final int TAG_BITS = 128;

    private Contract() {}

    /** {@code schemas/avro/<EventType>/v<N>.avsc}, self-contained, parsed by Avro itself. */
    public static Schema schema(Path schemasDir, String eventType, int version) throws IOException {
        return new Schema.Parser().parse(schemasDir.resolve(eventType).resolve("v" + version + ".avsc").toFile());
    }

    /** The highest version published for an event type: what a new producer writes. */
    public static int currentVersion(Path schemasDir, String eventType) throws IOException {
        try (Stream<Path> files = Files.list(schemasDir.resolve(eventType))) {
            return files.map(p -> p.getFileName().toString())
                    .filter(n -> n.matches("v\\d+\\.avsc"))
                    .mapToInt(n -> Integer.parseInt(n.substring(1, n.length() - 5)))
                    .max().orElseThrow(() -> new IOException("no schema for " + eventType));
        }
    }

    /** The record value: Avro's own single-object encoder (C3 01, fingerprint, body). */
    public static byte[] encode(Schema schema, GenericRecord record) throws IOException {
        ByteBuffer buffer = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), schema).encode(record);
        byte[] out = new byte[buffer.remaining()];
        buffer.get(out);
        return out;
    }

    /** The 8 fingerprint bytes as they appear on the wire: the CRC-64-AVRO long, little-endian. */
    public static byte[] wireFingerprint(Schema schema) {
        long fp = SchemaNormalization.parsingFingerprint64(schema);
        byte[] out = new byte[8];
        for (int i = 0; i < 8; i++) {
            out[i] = (byte) (fp >>> (8 * i));
        }
        return out;
    }

    /** Kafka key: the protocol number, else the request id (retrievals), access_id (access audit),
     *  approval_id (approvals) or subject_ref (erasure), the first field the record has. */
    public static String kafkaKey(GenericRecord record) {
        Object protocol = ((GenericRecord) record.get("meta")).get("protocol_number");
        if (protocol != null) {
            return protocol.toString();
        }
        for (String own : List.of("request_id", "access_id", "approval_id", "subject_ref")) {
            if (record.getSchema().getField(own) != null) {
                return record.get(own).toString();
            }
        }
        throw new IllegalArgumentException(record.getSchema().getName() + " needs a protocol number");
    }

    /** Headers, in this order: event_type and event_id, UTF-8 text. */
    public static List<Map.Entry<String, byte[]>> headers(String eventType, String eventId) {
        return List.of(Map.entry("event_type", eventType.getBytes(StandardCharsets.UTF_8)),
                Map.entry("event_id", eventId.getBytes(StandardCharsets.UTF_8)));
    }

    // -- personal data ----------------------------------------------------------------

    /** The 11 digits of a valid CPF (dots, dashes and spaces dropped), or an exception. */
    public static String cpfDigits(String cpf) {
        String digits = cpf.replaceAll("[.\\-\\s]", "");
        if (!digits.matches("[0-9]{11}") || digits.chars().distinct().count() == 1) {
            throw new IllegalArgumentException("not a CPF: " + digits.length() + " characters");
        }
        for (int n = 9; n <= 10; n++) {
            int total = 0;
            for (int i = 0; i < n; i++) {
                total += (digits.charAt(i) - '0') * (n + 1 - i);
            }
            int r = total % 11;
            if (digits.charAt(n) - '0' != (r < 2 ? 0 : 11 - r)) {
                throw new IllegalArgumentException("CPF check digit is wrong");
            }
        }
        return digits;
    }

    /** HMAC-SHA256 of {@code kind:value} (UTF-8) under the index key, 64 lowercase hex digits. */
    public static String blindIndex(byte[] indexKey, String kind, String value) throws GeneralSecurityException {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(indexKey, "HmacSHA256"));
        return HEX.formatHex(mac.doFinal((kind + ":" + value).getBytes(StandardCharsets.UTF_8)));
    }

    public static String cpfIndex(byte[] indexKey, String cpf) throws GeneralSecurityException {
        return blindIndex(indexKey, "cpf", cpfDigits(cpf));
    }

    public static String customerCodeIndex(byte[] indexKey, String code) throws GeneralSecurityException {
        return blindIndex(indexKey, "customer", code.strip());
    }

    /**
     * The sealed plaintext: {"cpf":..,"customer_code":..,"name":..} with no spaces, each value a
     * JSON string or null, every character outside printable ASCII escaped as {@code \\uXXXX}
     * (lowercase hex, UTF-16 code units) except the short escapes {@code \" \\ \n \r \t \b \f}.
     */
    public static byte[] sealedPlaintext(String cpfDigits, String customerCode, String name) {
        StringBuilder out = new StringBuilder("{\"cpf\":");
        jsonString(out, cpfDigits);
        out.append(",\"customer_code\":");
        jsonString(out, customerCode);
        out.append(",\"name\":");
        jsonString(out, name);
        return out.append('}').toString().getBytes(StandardCharsets.US_ASCII);
    }

    private static void jsonString(StringBuilder out, String value) {
        if (value == null) {
            out.append("null");
            return;
        }
        out.append('"');
        for (char c : value.toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                case '\b' -> out.append("\\b");
                case '\f' -> out.append("\\f");
                default -> {
                    if (c < 0x20 || c > 0x7e) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }

    /** AES-256-GCM, 12-byte nonce, 128-bit tag appended; associated data = event_id text. */
    public static byte[] seal(byte[] dataKey, byte[] nonce, byte[] plaintext, String eventId)
            throws GeneralSecurityException {
        return aesGcm(Cipher.ENCRYPT_MODE, dataKey, nonce, eventId).doFinal(plaintext);
    }

    public static byte[] open(byte[] dataKey, byte[] nonce, byte[] ciphertext, String eventId)
            throws GeneralSecurityException {
        return aesGcm(Cipher.DECRYPT_MODE, dataKey, nonce, eventId).doFinal(ciphertext);
    }

    private static Cipher aesGcm(int mode, byte[] key, byte[] nonce, String eventId) throws GeneralSecurityException {
        if (key.length != 32 || nonce.length != NONCE_BYTES) {
            throw new GeneralSecurityException("AES-256-GCM needs a 32-byte key and a 12-byte nonce");
        }
        Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
        cipher.init(mode, new SecretKeySpec(key, "AES"), new GCMParameterSpec(TAG_BITS, nonce));
        cipher.updateAAD(eventId.getBytes(StandardCharsets.UTF_8));
        return cipher;
    }
}
