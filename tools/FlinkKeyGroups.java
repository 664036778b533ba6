// Prints the key groups, ranges and owners that Flink's own KeyGroupRangeAssignment computes, which
// src/state/key_group.rs pins in its tests (key_groups_are_flinks, ranges_and_owners_are_flinks).
// Regenerate with a JDK and Flink's jar from PyPI (no other download):
//   pip download --no-deps -d /tmp/flink apache-flink-libraries==2.3.0
//   unzip -q /tmp/flink/apache_flink_libraries-*.whl pyflink/lib/flink-dist-*.jar -d /tmp/flink
//   javac -encoding UTF-8 -cp /tmp/flink/pyflink/lib/flink-dist-2.3.0.jar -d /tmp/flink tools/FlinkKeyGroups.java
//   java -Dfile.encoding=UTF-8 -cp /tmp/flink/pyflink/lib/flink-dist-2.3.0.jar:/tmp/flink FlinkKeyGroups
import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.runtime.state.KeyGroupRange;

public class FlinkKeyGroups {
    public static void main(String[] args) {
        String[] keys = {"", "hello", "flink", "k0", "k1", "k999", "world", "Grüße", "naïve", "日本語", "😀", "a😀b", "ключ", "the quick brown fox"};
        int[] maxes = {128, 4096, 32768};
        for (String key : keys) {
            StringBuilder line = new StringBuilder();
            line.append("(\"").append(key).append("\", [");
            for (int i = 0; i < maxes.length; i++) {
                if (i > 0) line.append(", ");
                line.append(KeyGroupRangeAssignment.assignToKeyGroup(key, maxes[i]));
            }
            line.append("]),");
            System.out.println(line);
        }
        // Ranges and owners for a few parallelisms.
        for (int max : maxes) {
            for (int p : new int[]{3, 7, 64}) {
                KeyGroupRange r = KeyGroupRangeAssignment.computeKeyGroupRangeForOperatorIndex(max, p, p - 1);
                int owner = KeyGroupRangeAssignment.computeOperatorIndexForKeyGroup(max, p, max / 2 + 1);
                System.out.println("range " + max + " " + p + " last=" + r.getStartKeyGroup() + ".." + r.getEndKeyGroup() + " owner(" + (max/2+1) + ")=" + owner);
            }
        }
    }
}
