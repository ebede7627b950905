package dev.ferry.dataplane;

import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.ServerServiceDefinition;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/** The two transports the data plane is tested on: in-process, and Netty over loopback TCP (port 0). */
public enum Transport {
    IN_PROCESS, NETTY;

    /**
     * A started server with {@code service} and a channel to it. The server runs its calls on an executor of its own,
     * so {@link Endpoint#close()} can wait until no handler runs before the test unmaps guest memory.
     */
    public Endpoint start(ServerServiceDefinition service) throws IOException {
        // Like newCachedThreadPool, but tasks arriving after shutdown (Netty can report a stream closed after the
        // server terminated) are dropped instead of logged as rejected.
        ExecutorService executor = new ThreadPoolExecutor(0, Integer.MAX_VALUE, 60, TimeUnit.SECONDS,
                new SynchronousQueue<>(), new ThreadPoolExecutor.DiscardPolicy());
        if (this == IN_PROCESS) {
            String name = InProcessServerBuilder.generateName();
            Server server = InProcessServerBuilder.forName(name).executor(executor).addService(service).build().start();
            return new Endpoint(server, InProcessChannelBuilder.forName(name).build(), executor);
        }
        Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
                .executor(executor).addService(service).build().start();
        ManagedChannel channel = dev.ferry.security.TransportSecurity.insecure().channelBuilder("127.0.0.1:" + server.getPort()).build();
        return new Endpoint(server, channel, executor);
    }

    /** A server and a channel to it; closing shuts both down and waits for them. */
    public record Endpoint(Server server, ManagedChannel channel, ExecutorService executor) implements AutoCloseable {
        /** Cuts the connection the hard way: the server goes away. */
        public void shutdownServer() throws InterruptedException {
            server.shutdownNow();
            server.awaitTermination(5, TimeUnit.SECONDS);
        }

        @Override
        public void close() {
            channel.shutdownNow();
            server.shutdownNow();
            try {
                channel.awaitTermination(5, TimeUnit.SECONDS);
                server.awaitTermination(5, TimeUnit.SECONDS);
                executor.shutdown();
                executor.awaitTermination(5, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
