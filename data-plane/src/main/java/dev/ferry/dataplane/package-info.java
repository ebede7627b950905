/**
 * Ferry's data plane: guest pages from the source's memory into the destination's, over
 * ferry.v1.PageTransferService/StreamPages (page_transfer_service.proto).
 *
 * <h2>Public surface</h2>
 * <ul>
 *   <li>Source: {@link dev.ferry.dataplane.PageSender} (one per migration, N streams on one channel),
 *       {@link dev.ferry.dataplane.RoundStats}, {@link dev.ferry.dataplane.PageTransferException},
 *       {@link dev.ferry.dataplane.BandwidthLimiter}.</li>
 *   <li>Destination: {@link dev.ferry.dataplane.PageTransferServer} (the service),
 *       {@link dev.ferry.dataplane.SessionLookup} (token → session), {@link dev.ferry.dataplane.IncomingPages}
 *       (what a session writes into) and its precopy implementation {@link dev.ferry.dataplane.MemoryPageWriter}.</li>
 * </ul>
 * Everything else is package-private.
 *
 * <h2>One round on one stream</h2>
 * <pre>
 *  source worker i                          gRPC                      destination handler (call executor)
 *  ───────────────                          ────                      ─────────────────────────────────
 *  chunk ← RoundCursor (64 pages)
 *  sort pages: data runs / zero ranges
 *  wait isReady() (onReady wakes)
 *  limiter.acquire(wire bytes)
 *  sendMessage(batch) ── drainTo: header,  ──HTTP/2──▶  parse: detach, header   (request(2) at start)
 *                        pages copied from               validate everything
 *                        guest memory and                copy pages transport buffers → guest memory,
 *                        hashed on the way               hash from memory; zero ranges: MADV_REMOVE
 *  … more batches …                                      request(1)
 *  last batch: end_of_round ───────────────────────▶    … written …
 *                                            ◀────────  PageAck{completed_round}
 *  sendRound returns when every stream acked the round
 * </pre>
 * A PageAck is also sent per 64 MiB of data between round ends. The source half-closes after its last round; the
 * destination then completes the call with OK.
 *
 * <h2>Lifetime of guest memory</h2>
 * Touching an unmapped guest mapping crashes the JVM, so both ends fence their memory access
 * ({@code MemoryFence}): after {@link dev.ferry.dataplane.PageSender#close()} returns, nothing of that sender reads
 * the source memory; after {@link dev.ferry.dataplane.MemoryPageWriter#close()} returns, nothing writes the
 * destination memory. Close them before unmapping.
 */
package dev.ferry.dataplane;
