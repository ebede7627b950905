package dev.ferry.devices;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Message;
import dev.ferry.kvm.vm.MicroVm;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateCodec;
import dev.ferry.state.StateException;
import dev.ferry.state.StateJson;
import dev.ferry.state.Stateful;

/** A device's saved state through the two forms it is kept in: the binary stream and the JSON dump. */
final class SectionRoundTrip {
    private SectionRoundTrip() {}

    /** Section → StateCodec bytes → section → payload message, as a snapshot file or the wire carries it. */
    static <M extends Message> M throughBytes(Stateful<M> device, M state) throws StateException {
        SectionSchema<M> schema = device.schema();
        byte[] bytes = StateCodec.encode(SectionSet.of(schema.encode(device.instanceId(), state)));
        return schema.decode(StateCodec.decode(bytes).get(schema.name(), device.instanceId()).orElseThrow());
    }

    /**
     * Section → JSON as {@code ferry state dump} prints it (typed, with the micro-VM's schemas) → section →
     * payload message; the section comes back byte for byte.
     */
    static <M extends Message> M throughJson(Stateful<M> device, M state) throws StateException {
        SectionSchema<M> schema = device.schema();
        SectionSet set = SectionSet.of(schema.encode(device.instanceId(), state));
        String json = StateJson.toJson(set, MicroVm.schemas());
        assertTrue(json.contains("\"state\": {"), "dumped as typed JSON, not base64:\n" + json);
        SectionSet back = StateJson.fromJson(json, MicroVm.schemas());
        assertEquals(set.sections(), back.sections());
        return schema.decode(back.get(schema.name(), device.instanceId()).orElseThrow());
    }
}
