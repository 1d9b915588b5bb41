package dev.rmqwasm;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.ConsumeOrderlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.consumer.listener.MessageListenerOrderly;
import org.apache.rocketmq.client.consumer.rebalance.AllocateMessageQueueAveragely;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;

/**
 * The Java push consumer as a peer of rmq-wasm's tests and benchmark: Apache RocketMQ's own
 * {@code DefaultMQPushConsumer} with a no-op (or recording) listener, started as a subprocess.
 *
 * <p>Arguments: {@code --namesrv A --group G --topic T [--expression E] [--mode
 * concurrently|orderly] [--from first|last] [--batch N] [--instance NAME] [--quiet] [--pop]}.
 *
 * <p>{@code --pop} (5.x clients): {@code clientRebalance = false}, so the consumer follows the
 * broker's QUERY_ASSIGNMENT — POP for a topic and group the admin set to POP. Set by reflection,
 * so the peer still compiles against the 4.9 client, which has no POP.
 *
 * <p>Protocol on stdout, one line each (the test reads it): {@code STARTED <clientId>} once
 * running; {@code ASSIGNED <broker>:<queue> ...} whenever the set of queues it holds changes
 * (sorted; empty list allowed); unless {@code --quiet}, {@code MSG <broker> <queue> <offset>
 * <reconsumeTimes> <startMillis> <endMillis> <keys>} per message consumed; {@code COUNT <n>} every
 * 200 ms while the count changes; {@code STOPPED <n>} after a graceful shutdown. The peer shuts
 * down when its stdin closes or reads {@code STOP}, so it never outlives the test that started it.
 */
public final class PeerConsumer {
    private static final AtomicLong CONSUMED = new AtomicLong();
    private static PrintStream out;

    private PeerConsumer() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = parse(args);
        out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), false, StandardCharsets.UTF_8);
        boolean quiet = opts.containsKey("quiet");
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(require(opts, "group"));
        consumer.setNamesrvAddr(require(opts, "namesrv"));
        consumer.setInstanceName(opts.getOrDefault("instance", "java-peer-" + ProcessHandle.current().pid()));
        consumer.subscribe(require(opts, "topic"), opts.getOrDefault("expression", "*"));
        consumer.setConsumeFromWhere("first".equals(opts.getOrDefault("from", "first"))
            ? ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET
            : ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET);
        consumer.setConsumeMessageBatchMaxSize(Integer.parseInt(opts.getOrDefault("batch", "1")));
        consumer.setAllocateMessageQueueStrategy(new AllocateMessageQueueAveragely());
        if (opts.containsKey("threads")) {
            int threads = Integer.parseInt(opts.get("threads"));
            consumer.setConsumeThreadMin(threads);
            consumer.setConsumeThreadMax(threads);
        }
        if (opts.containsKey("pop")) {
            DefaultMQPushConsumer.class.getMethod("setClientRebalance", boolean.class).invoke(consumer, false);
            DefaultMQPushConsumer.class.getMethod("setPopBatchNums", int.class).invoke(consumer, 4);
        }
        if ("orderly".equals(opts.getOrDefault("mode", "concurrently"))) {
            consumer.registerMessageListener((MessageListenerOrderly) (msgs, context) -> {
                record(msgs, quiet);
                return ConsumeOrderlyStatus.SUCCESS;
            });
        } else {
            consumer.registerMessageListener((MessageListenerConcurrently) (msgs, context) -> {
                record(msgs, quiet);
                return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
            });
        }
        consumer.start();
        emit("STARTED " + consumer.buildMQClientId());

        Thread watcher = new Thread(() -> watch(consumer), "peer-watcher");
        watcher.setDaemon(true);
        watcher.start();

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if ("STOP".equals(line.trim())) {
                break;
            }
        }
        consumer.shutdown();
        emit("STOPPED " + CONSUMED.get());
        System.exit(0);
    }

    private static void record(List<MessageExt> msgs, boolean quiet) {
        long start = System.currentTimeMillis();
        CONSUMED.addAndGet(msgs.size());
        if (quiet) {
            return;
        }
        long end = System.currentTimeMillis();
        StringBuilder lines = new StringBuilder();
        for (MessageExt m : msgs) {
            lines.append("MSG ").append(m.getBrokerName()).append(' ').append(m.getQueueId()).append(' ')
                .append(m.getQueueOffset()).append(' ').append(m.getReconsumeTimes()).append(' ')
                .append(start).append(' ').append(end).append(' ')
                .append(m.getKeys() == null ? "-" : m.getKeys()).append('\n');
        }
        synchronized (PeerConsumer.class) {
            out.print(lines);
            out.flush();
        }
    }

    /** Reports the held queues when they change, and the count while it changes. */
    private static void watch(DefaultMQPushConsumer consumer) {
        String lastAssigned = null;
        long lastCount = -1;
        while (true) {
            Set<String> held = new TreeSet<>();
            for (MessageQueue mq : consumer.getDefaultMQPushConsumerImpl().getRebalanceImpl().getProcessQueueTable().keySet()) {
                if (!mq.getTopic().startsWith("%RETRY%")) {
                    held.add(mq.getBrokerName() + ":" + mq.getQueueId());
                }
            }
            String assigned = String.join(" ", held);
            if (!assigned.equals(lastAssigned)) {
                emit("ASSIGNED " + assigned);
                lastAssigned = assigned;
            }
            long count = CONSUMED.get();
            if (count != lastCount) {
                emit("COUNT " + count);
                lastCount = count;
            }
            try {
                Thread.sleep(200);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private static void emit(String line) {
        synchronized (PeerConsumer.class) {
            out.println(line);
            out.flush();
        }
    }

    private static Map<String, String> parse(String[] args) {
        Map<String, String> opts = new HashMap<>();
        List<String> rest = new ArrayList<>(List.of(args));
        for (int i = 0; i < rest.size(); i++) {
            String arg = rest.get(i);
            if (!arg.startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument " + arg);
            }
            String key = arg.substring(2);
            if ("quiet".equals(key) || "pop".equals(key)) {
                opts.put(key, "true");
            } else if (i + 1 < rest.size()) {
                opts.put(key, rest.get(++i));
            } else {
                throw new IllegalArgumentException(arg + " needs a value");
            }
        }
        return opts;
    }

    private static String require(Map<String, String> opts, String key) {
        String value = opts.get(key);
        if (value == null) {
            throw new IllegalArgumentException("--" + key + " is required");
        }
        return value;
    }
}
