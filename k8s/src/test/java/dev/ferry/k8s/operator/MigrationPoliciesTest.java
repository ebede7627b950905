package dev.ferry.k8s.operator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class MigrationPoliciesTest {
    static GenericKubernetesResource policy(String name, Map<String, String> vmm, Map<String, String> ns,
            Map<String, Object> settings) {
        GenericKubernetesResource p = new GenericKubernetesResource();
        p.setApiVersion("ferry.dev/v1alpha1");
        p.setKind("MigrationPolicy");
        p.setMetadata(new ObjectMetaBuilder().withName(name).build());
        Map<String, Object> spec = new java.util.LinkedHashMap<>(settings);
        spec.put("selectors", Map.of("virtualMachineMigrationSelector", vmm, "namespaceSelector", ns));
        p.setAdditionalProperty("spec", spec);
        return p;
    }

    private static String selected(List<GenericKubernetesResource> ps, Map<String, String> labels, Map<String, String> ns) {
        return MigrationPolicies.select(ps, Map.of(), labels, ns).map(MigrationPolicies.Match::name).orElse("none");
    }

    @Test
    void theMatchingPolicyWithMostSelectorLabelsWinsAndTiesGoByName() {
        var broad = policy("broad", Map.of("team", "a"), Map.of(), Map.of());
        var gold = policy("gold", Map.of("team", "a", "tier", "gold"), Map.of(), Map.of());
        var nsGold = policy("ns-gold", Map.of("tier", "gold"), Map.of("env", "prod"), Map.of());
        var tieA = policy("a-tie", Map.of("team", "a"), Map.of(), Map.of());
        var all = policy("everything", Map.of(), Map.of(), Map.of());
        List<GenericKubernetesResource> ps = List.of(broad, gold, nsGold, tieA, all);
        assertEquals("gold", selected(ps, Map.of("team", "a", "tier", "gold"), Map.of()));
        assertEquals("a-tie", selected(ps, Map.of("team", "a"), Map.of()), "two match with one label: first name");
        assertEquals("everything", selected(ps, Map.of("team", "b"), Map.of()), "no selector labels: matches all");
        // namespace labels count like the migration's own: 2 (ns-gold) against 2 (gold), name decides
        assertEquals("gold", selected(ps, Map.of("team", "a", "tier", "gold"), Map.of("env", "prod")));
        assertEquals("ns-gold", selected(ps, Map.of("tier", "gold"), Map.of("env", "prod")));
        assertEquals("none", selected(List.of(broad, gold), Map.of("team", "b"), Map.of()));
    }

    @Test
    void vmLabelsSelectLikeTheMigrationsOwnAndCountTowardsPrecedence() {
        GenericKubernetesResource web = policy("web", Map.of(), Map.of(), Map.of());
        @SuppressWarnings("unchecked")
        Map<String, Object> spec = (Map<String, Object>) web.getAdditionalProperties().get("spec");
        spec.put("selectors", Map.of("virtualMachineSelector", Map.of("app", "web")));
        var team = policy("team", Map.of("team", "a"), Map.of(), Map.of());
        List<GenericKubernetesResource> ps = List.of(web, team);
        assertTrue(MigrationPolicies.selectsByVmLabels(ps));
        assertTrue(!MigrationPolicies.selectsByVmLabels(List.of(team)));
        assertEquals("web", MigrationPolicies.select(ps, Map.of("app", "web"), Map.of(), Map.of())
                .map(MigrationPolicies.Match::name).orElse("none"));
        assertEquals("none", MigrationPolicies.select(ps, Map.of("app", "db"), Map.of(), Map.of())
                .map(MigrationPolicies.Match::name).orElse("none"));
        // one label each: the tie goes by name
        assertEquals("team", MigrationPolicies.select(ps, Map.of("app", "web"), Map.of("team", "a"), Map.of())
                .map(MigrationPolicies.Match::name).orElse("none"));
    }

    @Test
    void theMigrationsOwnSpecWinsOverThePolicyFieldByField() {
        var p = policy("p", Map.of(), Map.of(), Map.of("mode", "POSTCOPY", "maxDowntime", "40ms",
                "bandwidthLimitBytesPerSecond", 1000, "completionTimeout", "10m", "pageCompression", "NONE"));
        Map<String, Object> own = Map.of("vm", "vms/x", "destinationNode", "b", "policy", Map.of("maxDowntime", "50ms"));
        Map<String, Object> spec = MigrationPolicies.effectiveSpec(own, p);
        assertEquals(MigrationMode.POSTCOPY, VirtualMachineMigrations.mode(spec));
        var policy = VirtualMachineMigrations.policy(spec);
        assertEquals(50_000_000, policy.getMaxDowntime().getNanos(), "the spec's maxDowntime wins");
        assertEquals(1000, policy.getBandwidthLimitBytesPerSecond());
        assertEquals(600, policy.getMaxTotalTime().getSeconds(), "completionTimeout is maxTotalTime");
        assertEquals(MigrationPolicy.PageCompression.NONE, policy.getPageCompression());
        var ownCompression = VirtualMachineMigrations.policy(MigrationPolicies.effectiveSpec(Map.of("vm", "vms/x",
                "policy", Map.of("pageCompression", "LZ4")), p));
        assertEquals(MigrationPolicy.PageCompression.LZ4, ownCompression.getPageCompression(), "the spec's wins");
        Map<String, Object> withMode = MigrationPolicies.effectiveSpec(Map.of("vm", "vms/x", "mode", "PRECOPY"), p);
        assertEquals(MigrationMode.PRECOPY, VirtualMachineMigrations.mode(withMode), "the spec's mode wins");
    }

    @Test
    void allowAutoConvergeTurnsTheAgentsAutoConvergeOnUnlessTheSpecSaysOtherwise() {
        var p = policy("ac", Map.of(), Map.of(), Map.of("allowAutoConverge", true));
        assertTrue(MigrationPolicies.refusal(p).isEmpty());
        var on = VirtualMachineMigrations.policy(MigrationPolicies.effectiveSpec(Map.of("vm", "vms/x"), p));
        assertTrue(on.getAutoConverge().getEnabled());
        var own = VirtualMachineMigrations.policy(MigrationPolicies.effectiveSpec(Map.of("vm", "vms/x",
                "policy", Map.of("autoConverge", Map.of("enabled", false))), p));
        assertEquals(false, own.getAutoConverge().getEnabled(), "the spec's autoConverge wins");
        var off = VirtualMachineMigrations.policy(MigrationPolicies.effectiveSpec(Map.of("vm", "vms/x"),
                policy("no", Map.of(), Map.of(), Map.of("allowAutoConverge", false))));
        assertEquals(false, off.getAutoConverge().getEnabled());
        var postcopy = VirtualMachineMigrations.policy(MigrationPolicies.effectiveSpec(Map.of("vm", "vms/x",
                "mode", "POSTCOPY"), p));
        assertEquals(false, postcopy.hasAutoConverge(), "nothing to throttle in postcopy");
    }

    @Test
    void aPolicyWithSettingsTheOperatorCannotReadIsRefusedNotIgnored() {
        assertTrue(MigrationPolicies.refusal(policy("bad", Map.of(), Map.of(), Map.of("maxDowntime", "soon")))
                .orElseThrow().contains("'soon' is not a duration"));
        assertTrue(MigrationPolicies.refusal(policy("bad", Map.of(), Map.of(), Map.of("completionTimeout", "1 hour")))
                .isPresent());
    }
}
