package dev.ferry.k8s.operator;

import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.NodeAddress;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.util.List;
import java.util.Optional;

/**
 * Where each node's Ferry agent listens for the control plane. The DaemonSet runs it with host
 * networking on a fixed port, so that is the node's InternalIP and the port, unless the node carries
 * the annotation {@value #ADDRESS_ANNOTATION} (a dedicated network, or a test).
 */
final class AgentLocator {
    static final String ADDRESS_ANNOTATION = "ferry.dev/agent-control-address";
    /** Nodes that can host VMs (the DaemonSet's nodeSelector). */
    static final String KVM_LABEL = "ferry.dev/kvm";

    private final KubernetesClient client;
    private final int port;

    AgentLocator(KubernetesClient client, int port) {
        this.client = client;
        this.port = port;
    }

    /** The agent's control address on {@code node}, or empty if the node is unknown or has no address. */
    Optional<String> controlAddress(String node) {
        return Optional.ofNullable(client.nodes().withName(node).get()).flatMap(this::controlAddress);
    }

    Optional<String> controlAddress(Node n) {
        String a = n.getMetadata().getAnnotations() == null ? null : n.getMetadata().getAnnotations().get(ADDRESS_ANNOTATION);
        if (a != null && !a.isEmpty()) {
            return Optional.of(a);
        }
        List<NodeAddress> addresses = n.getStatus() == null ? List.of() : n.getStatus().getAddresses();
        return addresses.stream().filter(x -> "InternalIP".equals(x.getType())).findFirst()
                .map(x -> x.getAddress().contains(":") ? "[" + x.getAddress() + "]:" + port : x.getAddress() + ":" + port);
    }

    /** The nodes that run agents. */
    List<Node> agentNodes() {
        return client.nodes().withLabel(KVM_LABEL, "true").list().getItems();
    }
}
