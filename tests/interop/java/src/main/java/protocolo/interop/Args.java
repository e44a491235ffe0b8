package protocolo.interop;

import java.util.HashMap;
import java.util.Map;

/** {@code --name value} pairs; a missing value or a stray word is an error. */
final class Args {
    private Args() {}

    static Map<String, String> parse(String[] args) {
        Map<String, String> out = new HashMap<>();
        for (int i = 0; i < args.length; i += 2) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                throw new IllegalArgumentException("expected --name value pairs, got " + String.join(" ", args));
            }
            out.put(args[i].substring(2), args[i + 1]);
        }
        return out;
    }

    static String required(Map<String, String> opts, String name) {
        String value = opts.get(name);
        if (value == null) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return value;
    }
}
