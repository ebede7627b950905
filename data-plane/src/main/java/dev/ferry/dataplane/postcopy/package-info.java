/**
 * Postcopy data-plane building blocks: missing pages of a running destination VM, served on demand from the paused
 * source over ferry.v1.PostcopyPagerService (postcopy_pager_service.proto), plus placement of the pages the source
 * pushes in the background over PageTransferService (PageBatch.postcopy = true).
 *
 * <h2>Public surface</h2>
 * <ul>
 *   <li>Source: {@link dev.ferry.dataplane.postcopy.PagerServer} (the service; serve it on a channel of its own),
 *       {@link dev.ferry.dataplane.postcopy.PagerSessions} (token → source),
 *       {@link dev.ferry.dataplane.postcopy.PageSource} and its implementation
 *       {@link dev.ferry.dataplane.postcopy.MemoryPageSource} (memory fence, fault listener for the push).</li>
 *   <li>Destination: {@link dev.ferry.dataplane.postcopy.PostcopyPager} (userfaultfd handler and the postcopy
 *       {@link dev.ferry.dataplane.IncomingPages}), {@link dev.ferry.dataplane.postcopy.PageFetcher} /
 *       {@link dev.ferry.dataplane.postcopy.GrpcPageFetcher} (pipelined StreamPageFaults client),
 *       {@link dev.ferry.dataplane.postcopy.FetchedPage}.</li>
 * </ul>
 *
 * <h2>One 4 KiB fault</h2>
 * <pre>
 *  vCPU thread          handler thread               gRPC (fetcher)          source (PagerServer)
 *  ───────────          ──────────────               ──────────────          ────────────────────
 *  touches page ──▶ uffd event
 *  (blocks in kernel)   poll(uffd, stop eventfd)
 *                       readEvents: batch of faults
 *                       MISSING → FETCHING, fetch ──▶ sendMessage(fault_id) ──▶ validate, zero check
 *                       (next batch, no waiting)                                reply: header + page bytes
 *                                                                               copied from guest memory
 *                                               onMessage: parse by fault_id ◀── (Drainable marshaller)
 *                                               complete future →
 *                                               UFFDIO_COPY (hash from bytes placed)
 *  ◀──────────────────────────────────────────── wakes the faulting thread(s)
 * </pre>
 * Faults on a page already being fetched join that fetch; pages pushed in the background are placed only while
 * missing; a fetch that fails leaves its threads blocked until {@code replaceFetcher} (recovery).
 */
package dev.ferry.dataplane.postcopy;
