package dev.ferry.control.migration;

import dev.ferry.control.agent.AgentServices;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import java.util.List;

/** An agent's real services, with its control-plane calls passed through {@code interceptor} (tests tamper there). */
final class InterceptedServices {
    private InterceptedServices() {}

    static AgentServices.Factory control(ServerInterceptor interceptor) {
        return a -> {
            MigrationServices real = new MigrationServices(a);
            return new AgentServices() {
                @Override
                public List<ServerServiceDefinition> controlServices() {
                    return real.controlServices().stream().map(s -> ServerInterceptors.intercept(s, interceptor)).toList();
                }

                @Override
                public List<ServerServiceDefinition> dataServices() {
                    return real.dataServices();
                }

                @Override
                public List<ServerServiceDefinition> pagerServices() {
                    return real.pagerServices();
                }

                @Override
                public void close() {
                    real.close();
                }
            };
        };
    }
}
