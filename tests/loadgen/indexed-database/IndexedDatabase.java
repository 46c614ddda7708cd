import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.util.List;

/** Serves the MongoDB wire protocol on 127.0.0.1:PORT from memory, until killed. */
public class IndexedDatabase {
    /**
     * Says it is MongoDB 5.0 (wire version 13): the Rust driver needs at least 4.4 (9), and the
     * library's own 5.0 constant reports wire version 8.
     */
    static final MongoVersion VERSION = new MongoVersion() {
        public List<Integer> getVersionArray() {
            return List.of(5, 0, 0);
        }

        public int getWireVersion() {
            return 13;
        }
    };

    public static void main(String[] args) throws InterruptedException {
        MongoServer server = new MongoServer(new MemoryBackend().version(VERSION));
        server.bind("127.0.0.1", Integer.parseInt(args[0]));
        Thread.currentThread().join();
    }
}
