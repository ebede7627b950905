package dev.ferry.k8s.operator;

import dev.ferry.v1.MigrationMode;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.client.dsl.base.ResourceDefinitionContext;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The cluster-scoped MigrationPolicy resource (manifests/crd-migrationpolicy.yaml), after KubeVirt's:
 * label selectors pick the migrations it applies to, and it supplies migration settings the
 * migration's own spec leaves unset. Selection and precedence are in docs/kubernetes.md.
 */
final class MigrationPolicies {
    static final ResourceDefinitionContext CONTEXT = new ResourceDefinitionContext.Builder()
            .withGroup("ferry.dev").withVersion("v1alpha1").withKind("MigrationPolicy")
            .withPlural("migrationpolicies").withNamespaced(false).build();

    private MigrationPolicies() {}

    /** The policy that applies, and how many of its selector labels matched. */
    record Match(GenericKubernetesResource policy, int score) {
        String name() {
            return policy.getMetadata().getName();
        }
    }

    /**
     * Why the operator cannot apply {@code policy} (a setting it cannot turn into a ferry.v1 policy), or
     * empty if it can: such a policy is refused, never half-applied.
     */
    static Optional<String> refusal(GenericKubernetesResource policy) {
        Map<String, Object> spec = VirtualMachineMigrations.section(policy, "spec");
        try {
            for (String d : List.of("maxDowntime", "completionTimeout")) {
                if (spec.containsKey(d)) {
                    VirtualMachineMigrations.duration(VirtualMachineMigrations.string(spec, d));
                }
            }
            if (spec.containsKey("mode")) {
                MigrationMode.valueOf(VirtualMachineMigrations.string(spec, "mode"));
            }
        } catch (IllegalArgumentException e) {
            return Optional.of(e.getMessage());
        }
        return Optional.empty();
    }

    /** Whether any policy selects by VM labels (only then does the operator ask the agent for them). */
    static boolean selectsByVmLabels(List<GenericKubernetesResource> policies) {
        return policies.stream().anyMatch(p -> !map(map(VirtualMachineMigrations.section(p, "spec").get("selectors"))
                .get("virtualMachineSelector")).isEmpty());
    }

    /**
     * The policy for a migration of a VM with {@code vmLabels} (Vm.labels, as its agent reports them), itself
     * carrying {@code labels}, in a namespace with {@code namespaceLabels}: among the policies whose every selector
     * label matches, the one with the most selector labels; ties go to the name first in alphabetical order. A
     * policy with no selector labels matches every migration, with score 0.
     */
    static Optional<Match> select(List<GenericKubernetesResource> policies, Map<String, String> vmLabels,
            Map<String, String> labels, Map<String, String> namespaceLabels) {
        return policies.stream().map(p -> score(p, vmLabels, labels, namespaceLabels)).flatMap(Optional::stream)
                .min(Comparator.comparingInt((Match m) -> -m.score()).thenComparing(Match::name));
    }

    private static Optional<Match> score(GenericKubernetesResource p, Map<String, String> vmLabels,
            Map<String, String> labels, Map<String, String> namespaceLabels) {
        Map<String, Object> selectors = map(VirtualMachineMigrations.section(p, "spec").get("selectors"));
        int score = 0;
        for (var sel : List.of(Map.entry("virtualMachineSelector", vmLabels),
                Map.entry("virtualMachineMigrationSelector", labels),
                Map.entry("namespaceSelector", namespaceLabels))) {
            for (Map.Entry<String, Object> want : map(selectors.get(sel.getKey())).entrySet()) {
                if (!String.valueOf(want.getValue()).equals(sel.getValue().get(want.getKey()))) {
                    return Optional.empty();
                }
                score++;
            }
        }
        return Optional.of(new Match(p, score));
    }

    /**
     * The migration's spec with the policy's settings filled in where the spec leaves them unset: the
     * migration's own spec.mode and spec.policy fields always win.
     */
    static Map<String, Object> effectiveSpec(Map<String, Object> spec, GenericKubernetesResource policy) {
        Map<String, Object> p = VirtualMachineMigrations.section(policy, "spec");
        Map<String, Object> out = new LinkedHashMap<>(spec);
        if (!out.containsKey("mode") && p.containsKey("mode")) {
            out.put("mode", p.get("mode"));
        }
        Map<String, Object> own = new LinkedHashMap<>(map(spec.get("policy")));
        for (var field : List.of(Map.entry("maxDowntime", "maxDowntime"),
                Map.entry("bandwidthLimitBytesPerSecond", "bandwidthLimitBytesPerSecond"),
                Map.entry("completionTimeout", "maxTotalTime"),
                Map.entry("pageCompression", "pageCompression"))) {
            if (p.containsKey(field.getKey()) && !own.containsKey(field.getValue())) {
                own.put(field.getValue(), p.get(field.getKey()));
            }
        }
        // A permission, as in KubeVirt: it has nothing to throttle in a POSTCOPY migration (and the agent
        // refuses auto-converge there), so it is left out for those.
        if (p.get("allowAutoConverge") instanceof Boolean allow && !own.containsKey("autoConverge")
                && !"POSTCOPY".equals(out.get("mode"))) {
            own.put("autoConverge", Map.of("enabled", allow));
        }
        out.put("policy", own);
        return out;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> map(Object o) {
        return o instanceof Map<?, ?> m ? (Map<String, Object>) m : Map.of();
    }
}
