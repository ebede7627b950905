package dev.ferry.control.agent;

import io.grpc.ServerServiceDefinition;
import java.util.List;

/** The migration machinery an agent hosts, kept apart from the agent's listeners and VMs. */
public interface AgentServices extends AutoCloseable {
    /** Services for the control listener (beside VmService, health and reflection). */
    List<ServerServiceDefinition> controlServices();

    /** Services for the data listener. */
    List<ServerServiceDefinition> dataServices();

    /** Services for the pager listener: postcopy faults, kept off the data listener's busy threads. */
    default List<ServerServiceDefinition> pagerServices() {
        return List.of();
    }

    @Override
    void close();

    /** Builds the services once the agent (and its VM registry) exists. */
    @FunctionalInterface
    interface Factory {
        AgentServices create(Agent agent);
    }

    /** No migration services: an agent that only hosts VMs. */
    static Factory none() {
        return a -> new AgentServices() {
            @Override
            public List<ServerServiceDefinition> controlServices() {
                return List.of();
            }

            @Override
            public List<ServerServiceDefinition> dataServices() {
                return List.of();
            }

            @Override
            public void close() {}
        };
    }
}
