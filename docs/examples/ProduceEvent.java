// Sends one shopper event to intentstream with Apache Kafka's own Java client
// (Maven: org.apache.kafka:kafka-clients), keyed by the raw user id as the
// workers require. Java 17 runs it as a single source file:
//
//   java -cp "$HOME/.cache/intentstream/kafka/4.1.1/libs/*" ProduceEvent.java \
//       localhost:9092 shop.events u123
//
// The arguments (all optional) are the bootstrap servers, the events topic and
// the user id. It prints the event id and where the broker wrote the event.

import java.util.Locale;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

public class ProduceEvent {
    public static void main(String[] args) throws Exception {
        String bootstrap = args.length > 0 ? args[0] : "localhost:9092";
        String topic = args.length > 1 ? args[1] : "shop.events";
        String userId = args.length > 2 ? args[2] : "u123";

        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        // On the embedded Tansu broker, which refuses idempotent producers, add:
        // config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");

        String eventId = UUID.randomUUID().toString();
        double ts = System.currentTimeMillis() / 1000.0; // epoch seconds, not milliseconds
        // Build the JSON with your JSON library (Jackson, Gson); this keeps the example short.
        String event = String.format(
                Locale.ROOT, // a decimal point whatever the machine's locale
                "{\"event_id\": \"%s\", \"user_id\": \"%s\", \"ts\": %.3f, \"type\": \"view\", "
                        + "\"item_id\": \"i42\", \"category\": \"shoes\", \"price\": 59.9}",
                eventId, json(userId), ts);

        try (KafkaProducer<String, String> producer = new KafkaProducer<>(config)) {
            // The key is the raw user id: the default partitioner (murmur2) sends every record
            // of a user to one partition, where the worker that owns the user reads it.
            RecordMetadata written = producer.send(new ProducerRecord<>(topic, userId, event)).get();
            System.out.printf(
                    "sent %s to %s partition %d offset %d%n",
                    eventId, written.topic(), written.partition(), written.offset());
        }
    }

    /** The string escaped for a JSON string literal. */
    private static String json(String text) {
        StringBuilder out = new StringBuilder();
        for (char c : text.toCharArray()) {
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20) {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        return out.toString();
    }
}
