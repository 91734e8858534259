"""recon_pipelines: declarative data reconciliation on Dagster."""
