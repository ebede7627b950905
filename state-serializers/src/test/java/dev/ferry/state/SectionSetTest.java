package dev.ferry.state;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class SectionSetTest {
    private static Section s(String name, String instance) {
        return new Section(name, instance, 1, 1, true, ByteString.EMPTY);
    }

    @Test
    void keepsOrderAndFindsByKey() {
        SectionSet set = SectionSet.of(s("b", "1"), s("a", ""), s("b", "0"));
        assertEquals(List.of("b/1", "a", "b/0"), set.sections().stream().map(Section::label).toList());
        assertEquals("b/0", set.get("b", "0").orElseThrow().label());
        assertTrue(set.get("b", "2").isEmpty());
        assertEquals(SectionSet.of(s("b", "1"), s("a", ""), s("b", "0")), set);
    }

    @Test
    void refusesDuplicates() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> SectionSet.of(s("kvm.vcpu", "0"), s("kvm.vcpu", "0")));
        assertEquals("section kvm.vcpu/0: appears more than once in the stream", e.getMessage());
    }

    @ParameterizedTest
    @ValueSource(strings = {"", " x", "a b", "a/b", ".x", "\u00e9"})
    void refusesBadNames(String name) {
        assertThrows(IllegalArgumentException.class, () -> s(name, ""));
    }

    @ParameterizedTest
    @ValueSource(strings = {"a/b", "a b", "\n", "\u00e9"})
    void refusesBadInstanceIds(String instance) {
        assertThrows(IllegalArgumentException.class, () -> s("x", instance));
    }

    @Test
    void refusesBadVersions() {
        assertThrows(IllegalArgumentException.class, () -> new Section("x", "", 0, 0, true, ByteString.EMPTY));
        assertThrows(IllegalArgumentException.class, () -> new Section("x", "", 2, 3, true, ByteString.EMPTY));
        assertThrows(IllegalArgumentException.class, () -> new Section("x", "", -1, 1, true, ByteString.EMPTY));
        assertThrows(IllegalArgumentException.class, () -> new Section("x", "", 1, 1, true, null));
    }

    @Test
    void labels() {
        assertEquals("kvm.vm", Section.label("kvm.vm", ""));
        assertEquals("device.serial/com1", Section.label("device.serial", "com1"));
        assertEquals("x/\\u000a", Section.label("x", "\n"));
    }
}
