package dev.stagecraft.jobs.engine;

import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.WorkflowSpec;

/**
 * One engine call in progress, as its steps' attempts see it.
 *
 * @param parentLease the lease the call holds ({@code EPOCH:TOKEN}): what a step launched as its own application runs
 *     under
 * @param meter the call's cost meter ({@link CostMeter#off} when the call is not metered)
 */
record RunContext(WorkflowSpec spec, Engine.Options options, Workspace ws, LedgerStore store, String parentLease,
    CostMeter meter) {
  String runId() {
    return options.runId();
  }
}
