package clusterbootstrap.pekko;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import org.apache.pekko.actor.AbstractActor;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.actor.Props;
import org.apache.pekko.cluster.Cluster;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.management.cluster.bootstrap.ClusterBootstrap;
import org.apache.pekko.management.javadsl.PekkoManagement;

/**
 * A Pekko node that forms its cluster with Pekko Management's Cluster Bootstrap.
 *
 * <p>Flags (values in seconds may be fractional):
 *
 * <pre>
 *   --host H                         remoting (artery TCP) canonical hostname and management host
 *   --remote-port P                  artery TCP port
 *   --management-port P              Pekko Management HTTP port (serves /bootstrap/seed-nodes)
 *   --contact-points-file F          management endpoints, host:port a line, re-read every lookup
 *   --required-contact-points N      contact-point-discovery.required-contact-point-nr
 *   --stable-margin S                contact-point-discovery.stable-margin
 *   --probe-interval S               contact-point.probe-interval
 *   --contact-point-discovery-interval S   contact-point-discovery.interval
 *   --log-level L                    DEBUG, INFO, WARNING or ERROR (default INFO)
 *   --system-name N                  the actor system's name (default: bootstrap)
 * </pre>
 *
 * <p>A setting whose flag is absent keeps Pekko's own default: the benchmark measures those first.
 *
 * <p>Stdout carries Pekko's log lines and these machine-readable lines, each whole:
 *
 * <pre>
 *   READY management=HOST:PORT self=ADDRESS   management bound, bootstrap started
 *   EVENT member-up ADDRESS                   (also member-joined, member-weakly-up, member-left,
 *                                             member-exited, member-downed, member-removed,
 *                                             unreachable, reachable)
 *   EVENT self-up ADDRESS                     this node is Up in a cluster
 *   EVENT self-removed ADDRESS                this node left or was removed
 *   EVENT terminated                          the actor system terminated; the JVM exits
 * </pre>
 *
 * <p>SIGTERM runs Pekko's coordinated shutdown (the cluster is left gracefully) and exits.
 */
public final class PekkoNode {
  private PekkoNode() {}

  /** The machine-readable lines: one writer, so a line is never split by another thread's. */
  static synchronized void emit(String line) {
    System.out.println(line);
    System.out.flush();
  }

  public static void main(String[] argv) {
    Map<String, String> flags;
    try {
      flags = parseFlags(argv);
    } catch (IllegalArgumentException error) {
      System.err.println("pekko-node: " + error.getMessage());
      System.exit(2);
      return;
    }
    Config config = ConfigFactory.parseMap(overrides(flags)).withFallback(ConfigFactory.load());
    String systemName = flags.getOrDefault("system-name", "bootstrap");
    ActorSystem system = ActorSystem.create(systemName, config);
    Cluster cluster = Cluster.get(system);

    system.actorOf(Props.create(ClusterEventPrinter.class), "cluster-event-printer");
    cluster.registerOnMemberUp(() -> emit("EVENT self-up " + cluster.selfAddress()));
    cluster.registerOnMemberRemoved(() -> emit("EVENT self-removed " + cluster.selfAddress()));

    try {
      // Management first: the bootstrap learns its own contact point from the bound endpoint.
      PekkoManagement.get(system).start().toCompletableFuture().get(30, TimeUnit.SECONDS);
      ClusterBootstrap.get(system).start();
    } catch (Exception error) {
      System.err.println("pekko-node: management or bootstrap failed to start: " + error);
      system.terminate();
      System.exit(1);
      return;
    }
    emit("READY management=" + flags.get("host") + ":" + flags.get("management-port")
        + " self=" + cluster.selfAddress());

    system.getWhenTerminated().toCompletableFuture().join();
    emit("EVENT terminated");
  }

  private static final List<String> REQUIRED =
      List.of("host", "remote-port", "management-port", "contact-points-file");
  private static final List<String> OPTIONAL =
      List.of(
          "required-contact-points",
          "stable-margin",
          "probe-interval",
          "contact-point-discovery-interval",
          "log-level",
          "system-name");

  static Map<String, String> parseFlags(String[] argv) {
    Map<String, String> flags = new HashMap<>();
    for (int i = 0; i < argv.length; i += 2) {
      String flag = argv[i];
      String name = flag.startsWith("--") ? flag.substring(2) : "";
      if (!REQUIRED.contains(name) && !OPTIONAL.contains(name)) {
        throw new IllegalArgumentException("unknown flag " + flag);
      }
      if (i + 1 >= argv.length) {
        throw new IllegalArgumentException(flag + " needs a value");
      }
      flags.put(name, argv[i + 1]);
    }
    for (String name : REQUIRED) {
      if (!flags.containsKey(name)) {
        throw new IllegalArgumentException("--" + name + " is required");
      }
    }
    return flags;
  }

  /** The settings that the flags override; everything else comes from application.conf. */
  static Map<String, Object> overrides(Map<String, String> flags) {
    Map<String, Object> settings = new HashMap<>();
    String host = flags.get("host");
    settings.put("pekko.remote.artery.canonical.hostname", host);
    settings.put("pekko.remote.artery.canonical.port", port(flags, "remote-port"));
    settings.put("pekko.management.http.hostname", host);
    settings.put("pekko.management.http.port", port(flags, "management-port"));
    Path file = Paths.get(flags.get("contact-points-file")).toAbsolutePath();
    settings.put("pekko.discovery.contact-points-file.path", file.toString());

    String bootstrap = "pekko.management.cluster.bootstrap.";
    if (flags.containsKey("required-contact-points")) {
      settings.put(
          bootstrap + "contact-point-discovery.required-contact-point-nr",
          positive(flags, "required-contact-points"));
    }
    putDuration(settings, flags, "stable-margin", bootstrap + "contact-point-discovery.stable-margin");
    putDuration(settings, flags, "probe-interval", bootstrap + "contact-point.probe-interval");
    putDuration(
        settings,
        flags,
        "contact-point-discovery-interval",
        bootstrap + "contact-point-discovery.interval");

    String level = flags.getOrDefault("log-level", "INFO").toUpperCase(Locale.ROOT);
    if (!List.of("DEBUG", "INFO", "WARNING", "ERROR").contains(level)) {
      throw new IllegalArgumentException("--log-level must be DEBUG, INFO, WARNING or ERROR");
    }
    settings.put("pekko.loglevel", level);
    settings.put("pekko.stdout-loglevel", level);
    return settings;
  }

  private static int port(Map<String, String> flags, String name) {
    int value = positive(flags, name);
    if (value > 65535) {
      throw new IllegalArgumentException("--" + name + " must be a port, got " + value);
    }
    return value;
  }

  private static int positive(Map<String, String> flags, String name) {
    try {
      int value = Integer.parseInt(flags.get(name));
      if (value < 1) {
        throw new IllegalArgumentException("--" + name + " must be at least 1, got " + value);
      }
      return value;
    } catch (NumberFormatException error) {
      throw new IllegalArgumentException("--" + name + " must be an integer", error);
    }
  }

  private static void putDuration(
      Map<String, Object> settings, Map<String, String> flags, String name, String key) {
    if (!flags.containsKey(name)) {
      return; // absent: Pekko's own default stays
    }
    double seconds;
    try {
      seconds = Double.parseDouble(flags.get(name));
    } catch (NumberFormatException error) {
      throw new IllegalArgumentException("--" + name + " must be a number of seconds", error);
    }
    if (!(seconds >= 0) || Double.isInfinite(seconds)) {
      throw new IllegalArgumentException("--" + name + " must be a number of seconds >= 0");
    }
    settings.put(key, Math.round(seconds * 1000) + "ms");
  }

  /** Prints one EVENT line per cluster membership and reachability event. */
  static final class ClusterEventPrinter extends AbstractActor {
    private final Cluster cluster = Cluster.get(getContext().getSystem());

    @Override
    public void preStart() {
      cluster.subscribe(
          getSelf(),
          ClusterEvent.initialStateAsEvents(),
          ClusterEvent.MemberEvent.class,
          ClusterEvent.ReachabilityEvent.class);
    }

    @Override
    public void postStop() {
      cluster.unsubscribe(getSelf());
    }

    @Override
    public Receive createReceive() {
      return receiveBuilder()
          .match(ClusterEvent.MemberJoined.class, e -> member("member-joined", e.member()))
          .match(ClusterEvent.MemberWeaklyUp.class, e -> member("member-weakly-up", e.member()))
          .match(ClusterEvent.MemberUp.class, e -> member("member-up", e.member()))
          .match(ClusterEvent.MemberLeft.class, e -> member("member-left", e.member()))
          .match(ClusterEvent.MemberExited.class, e -> member("member-exited", e.member()))
          .match(ClusterEvent.MemberDowned.class, e -> member("member-downed", e.member()))
          .match(ClusterEvent.MemberRemoved.class, e -> member("member-removed", e.member()))
          .match(ClusterEvent.UnreachableMember.class, e -> member("unreachable", e.member()))
          .match(ClusterEvent.ReachableMember.class, e -> member("reachable", e.member()))
          .matchAny(e -> {})
          .build();
    }

    private static void member(String kind, org.apache.pekko.cluster.Member member) {
      emit("EVENT " + kind + " " + member.address());
    }
  }
}
