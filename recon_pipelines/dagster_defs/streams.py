"""``change_stream_<name>``: the event-driven reconciliation of a spec's ``change_stream``.

Each evaluation consumes events from the durable JetStream consumer into the expectation store
(acknowledged once stored), claims the keys whose window passed in batches, and requests one
``recheck_<name>`` run per batch. A batch's claim is stored before its run is requested and is
the run key, so a batch is launched exactly once: a batch whose request was lost (a crashed
tick) is requested again with the same key, and Dagster skips keys it has launched.

The lag (events not yet consumed, open and overdue keys, the oldest open key's age) is
recorded as an observation of the reconciliation's ``discrepancies`` asset on every tick.
"""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

from recon_pipelines.dagster_defs.assets import asset_key
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.names import recheck_op_name
from recon_pipelines.redact import redact
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.streams import wiring
from recon_pipelines.streams.jetstream import StreamError


def change_stream_sensor(spec: ReconciliationSpec, job: dg.JobDefinition) -> dg.SensorDefinition:
    stream = spec.change_stream

    @dg.sensor(name=f"change_stream_{spec.name}", job=job, minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.RUNNING if stream.running else dg.DefaultSensorStatus.STOPPED,
               description=f"Consumes stream {stream.stream}; re-checks keys whose counterpart did not arrive within "
                           f"{stream.window:g} s.")
    def change_stream(context: dg.SensorEvaluationContext, recon: ReconResource):
        store = wiring.expectation_store(spec, recon.tracker().engine)
        try:
            with wiring.shared_log(spec) as log:
                consumed = wiring.consume(log, store, stream.max_events_per_tick, timeout=1.0)
                for line in log.rejected:
                    context.log.warning(line)
                now = datetime.now(timezone.utc)
                metadata = {"events_consumed": consumed.handled, **wiring.lag_metadata(store, log, now)}
        except StreamError as exc:
            return dg.SkipReason(redact(str(exc)))
        batches = store.claimed()  # earlier batches again: Dagster skips the run keys it launched
        batches.update(store.claim_due(now, stream.keys_per_run, stream.max_runs_per_tick))
        late = metadata["oldest_open_age_s"] - stream.window
        metadata["lag_warning"] = late > stream.lag_warning
        if metadata["lag_warning"]:
            context.log.warning(f"{spec.name}: a key has been open {late:.0f} s past its {stream.window:g} s window")
        requests = [
            dg.RunRequest(run_key=f"{spec.name}:stream:{claim}", tags={"recon/trigger": "change_stream"},
                          run_config={"ops": {recheck_op_name(spec.name): {"config": {"keys": keys, "stream_claim": claim}}}})
            for claim, keys in batches.items()
        ]
        observation = dg.AssetObservation(asset_key=asset_key(spec, "discrepancies"), metadata=metadata)
        return dg.SensorResult(
            run_requests=requests, asset_events=[observation],
            skip_reason=None if requests else f"{consumed.handled} event(s) consumed; {metadata['open_expectations']} key(s) open",
        )

    return change_stream
