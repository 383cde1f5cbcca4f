"""Offline reprocessing campaigns: many events, one top-level DAG, one manifest, one report (docs/campaigns.md).

The modules, by concept: ``inputs`` (which files are candidate events), ``manifest`` (campaign.json and the
names in a campaign directory), ``graph`` (campaign.dag and the FINAL node's files), ``create`` (admitting the
inputs and writing it all), ``status`` (per-event and campaign status), ``run`` (local run and HTCondor submit)
and the ``report`` package. This package re-exports the public names of all but the report, so that
``import skyscan.campaign as campaign`` is enough to drive one; the report (numpy, h5py) is imported on its own.
"""

from skyscan.campaign.create import DEFAULT_MAX_RUNNING, CreateProgress, create_campaign
from skyscan.campaign.graph import CAMPAIGN_DAG, EVENTS_DIR, campaign_dag_text, campaign_workflow
from skyscan.campaign.inputs import Candidate, expand_inputs
from skyscan.campaign.manifest import (
    CAMPAIGN_SCHEMA,
    MANIFEST,
    REPORT_DIR,
    EventEntry,
    Manifest,
    Rejected,
    event_name,
    read_manifest,
)
from skyscan.campaign.run import CampaignProgress, CampaignRun, load_campaign_config, run_campaign, submit_campaign
from skyscan.campaign.status import (
    CAMPAIGN_STATUS_SCHEMA,
    CampaignStatus,
    EventStatus,
    campaign_status,
    event_status,
    format_campaign_status,
)

__all__ = [
    "CAMPAIGN_DAG",
    "CAMPAIGN_SCHEMA",
    "CAMPAIGN_STATUS_SCHEMA",
    "DEFAULT_MAX_RUNNING",
    "EVENTS_DIR",
    "MANIFEST",
    "REPORT_DIR",
    "CampaignProgress",
    "CampaignRun",
    "CampaignStatus",
    "Candidate",
    "CreateProgress",
    "EventEntry",
    "EventStatus",
    "Manifest",
    "Rejected",
    "campaign_dag_text",
    "campaign_status",
    "campaign_workflow",
    "create_campaign",
    "event_name",
    "event_status",
    "expand_inputs",
    "format_campaign_status",
    "load_campaign_config",
    "read_manifest",
    "run_campaign",
    "submit_campaign",
]
