package clusterbootstrap.pekko;

import java.io.IOException;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;

import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.discovery.Lookup;
import org.apache.pekko.discovery.ServiceDiscovery;
import scala.Option;
import scala.concurrent.Future;
import scala.concurrent.Future$;
import scala.concurrent.duration.FiniteDuration;
import scala.jdk.javaapi.CollectionConverters;

/**
 * Service discovery from a file of management endpoints, one {@code host:port} a line.
 *
 * <p>Registered as {@code pekko.discovery.contact-points-file.class}; the file is
 * {@code pekko.discovery.contact-points-file.path}. Rules:
 *
 * <ul>
 *   <li>The file is read again at every lookup, so a test or the benchmark can add and remove
 *       contact points while the node runs (as a Kubernetes endpoint list changes).
 *   <li>Blank lines and lines starting with {@code #} are skipped; a line is {@code host:port} or
 *       {@code [ipv6]:port}. Every lookup answers the same list whatever service or port name it
 *       asks for: the file holds exactly one service's management endpoints.
 *   <li>An unreadable file or a malformed line fails the lookup (the bootstrap logs "Resolve
 *       attempt failed" and backs off, as with a DNS failure); it never answers a partial list,
 *       which would look like nodes leaving.
 * </ul>
 */
public final class ContactPointsFileDiscovery extends ServiceDiscovery {
  private static final String PATH_KEY = "pekko.discovery.contact-points-file.path";

  private final Path file;

  /** Called by Pekko's Discovery extension, by reflection. */
  public ContactPointsFileDiscovery(ExtendedActorSystem system) {
    this.file = Paths.get(system.settings().config().getString(PATH_KEY));
  }

  @Override
  public Future<Resolved> lookup(Lookup lookup, FiniteDuration resolveTimeout) {
    try {
      List<ResolvedTarget> targets = read(file);
      return Future$.MODULE$.successful(
          new Resolved(lookup.serviceName(), CollectionConverters.asScala(targets).toList()));
    } catch (IOException | IllegalArgumentException error) {
      return Future$.MODULE$.failed(error);
    }
  }

  static List<ResolvedTarget> read(Path file) throws IOException {
    List<ResolvedTarget> targets = new ArrayList<>();
    int number = 0;
    for (String raw : Files.readAllLines(file, StandardCharsets.UTF_8)) {
      number++;
      String line = raw.strip();
      if (line.isEmpty() || line.startsWith("#")) {
        continue;
      }
      targets.add(parse(line, file + ":" + number));
    }
    return targets;
  }

  private static ResolvedTarget parse(String line, String where) {
    int colon = line.lastIndexOf(':');
    if (colon <= 0 || colon == line.length() - 1) {
      throw new IllegalArgumentException(where + ": expected host:port, got '" + line + "'");
    }
    String host = line.substring(0, colon);
    if (host.startsWith("[") && host.endsWith("]")) {
      host = host.substring(1, host.length() - 1);
    }
    int port;
    try {
      port = Integer.parseInt(line.substring(colon + 1));
    } catch (NumberFormatException error) {
      throw new IllegalArgumentException(where + ": bad port in '" + line + "'", error);
    }
    if (port < 1 || port > 65535) {
      throw new IllegalArgumentException(where + ": port out of range in '" + line + "'");
    }
    // Pekko's DNS discovery fills in the address too; an IP literal is its own address (no
    // lookup happens for a literal), and a name is left to the HTTP client to resolve.
    Option<InetAddress> address = Option.apply(null);
    if (isIpLiteral(host)) {
      try {
        address = Option.apply(InetAddress.getByName(host));
      } catch (IOException error) {
        throw new IllegalArgumentException(where + ": bad address in '" + line + "'", error);
      }
    }
    return new ResolvedTarget(host, Option.<Object>apply(port), address);
  }

  private static boolean isIpLiteral(String host) {
    return host.contains(":") || host.chars().allMatch(c -> c == '.' || Character.isDigit(c));
  }
}
