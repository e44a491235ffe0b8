package protocolo.interop;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericEnumSymbol;
import org.apache.avro.generic.GenericRecord;

/**
 * The vectors' "record" convention (schemas/vectors/README.md), both ways: unions are their
 * bare value, enums their symbol, timestamps integer micros, uuids text, bytes lowercase hex.
 * Driven by the schema alone.
 */
public final class PlainJson {
    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    private PlainJson() {}

    public static JsonNode fromAvro(Schema schema, Object value) {
        switch (schema.getType()) {
            case NULL:
                return NODES.nullNode();
            case UNION: {
                int branch = GenericData.get().resolveUnion(schema, value);
                return fromAvro(schema.getTypes().get(branch), value);
            }
            case RECORD: {
                ObjectNode out = NODES.objectNode();
                GenericRecord record = (GenericRecord) value;
                for (Schema.Field f : schema.getFields()) {
                    out.set(f.name(), fromAvro(f.schema(), record.get(f.pos())));
                }
                return out;
            }
            case ARRAY: {
                ArrayNode out = NODES.arrayNode();
                for (Object item : (List<?>) value) {
                    out.add(fromAvro(schema.getElementType(), item));
                }
                return out;
            }
            case ENUM:
            case STRING:
                return NODES.textNode(value.toString());
            case BYTES: {
                ByteBuffer buffer = ((ByteBuffer) value).duplicate();
                byte[] raw = new byte[buffer.remaining()];
                buffer.get(raw);
                return NODES.textNode(Contract.HEX.formatHex(raw));
            }
            case INT:
                return NODES.numberNode((long) (Integer) value);
            case LONG:
                return NODES.numberNode((Long) value);
            case BOOLEAN:
                return NODES.booleanNode((Boolean) value);
            default:
                throw new IllegalArgumentException("type not used by the contract: " + schema.getType());
        }
    }

    public static Object toAvro(Schema schema, JsonNode value) {
        switch (schema.getType()) {
            case NULL:
                return null;
            case UNION: {
                if (value.isNull()) {
                    return null;
                }
                for (Schema branch : schema.getTypes()) {
                    if (branch.getType() != Schema.Type.NULL) {
                        return toAvro(branch, value); // every union of the contract is [null, X]
                    }
                }
                throw new IllegalArgumentException("union without a non-null branch");
            }
            case RECORD: {
                GenericData.Record record = new GenericData.Record(schema);
                for (Schema.Field f : schema.getFields()) {
                    if (!value.has(f.name())) {
                        throw new IllegalArgumentException("missing field " + f.name());
                    }
                    record.put(f.pos(), toAvro(f.schema(), value.get(f.name())));
                }
                return record;
            }
            case ARRAY: {
                List<Object> out = new ArrayList<>();
                value.forEach(item -> out.add(toAvro(schema.getElementType(), item)));
                return new GenericData.Array<>(schema, out);
            }
            case ENUM: {
                GenericEnumSymbol<?> symbol = new GenericData.EnumSymbol(schema, value.asText());
                if (!schema.hasEnumSymbol(value.asText())) {
                    throw new IllegalArgumentException(value.asText() + " is not a symbol of " + schema.getFullName());
                }
                return symbol;
            }
            case STRING:
                return value.asText();
            case BYTES:
                return ByteBuffer.wrap(Contract.HEX.parseHex(value.asText()));
            case INT:
                return value.intValue();
            case LONG:
                return value.longValue();
            case BOOLEAN:
                return value.booleanValue();
            default:
                throw new IllegalArgumentException("type not used by the contract: " + schema.getType());
        }
    }
}
