"""Lineage from a dbt model to the snapshot that reads it: the snapshot asset of a ``type: dbt``
side depends on the model's asset key as dagster-dbt names it, so a code location that also loads
the project's ``@dbt_assets`` draws dbt model -> snapshot in one graph."""

# No `from __future__ import annotations` here: Dagster inspects annotations at runtime.
import dagster as dg

from recon_pipelines.spec.models import DbtSource


def upstream_keys(source) -> list[dg.AssetKey]:
    """The dbt model's asset key (``DagsterDbtTranslator().get_asset_key`` on its manifest node,
    or the spec's ``asset_key`` for a custom translator); none for other sources."""
    if not isinstance(source, DbtSource):
        return []
    if source.asset_key:
        return [dg.AssetKey(source.asset_key)]
    try:
        from dagster_dbt import DagsterDbtTranslator
    except ImportError:
        raise ImportError("a type: dbt source needs dagster-dbt for its lineage: pip install 'recon_pipelines[dbt]' "
                          "(or give the source an asset_key)") from None
    from recon_pipelines.sources.dbt import find_model

    return [DagsterDbtTranslator().get_asset_key(find_model(source).node)]
