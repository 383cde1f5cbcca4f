"""Every file and folder name of a scan directory, in one place.

A scan directory (``skyscan submit``/``skyscan run`` OUTDIR) holds::

    event.json  config.yaml  skyscan-node  <kind>.sub  logs/
    skyscan.dag  skyscan.outputs.json  skyscan.dag.status  skyscan.dag.jobstate.log  skyscan.dag.dagman.out
    skyscan.dag.runstate.json
    prepare.json
    stage<k>/batch-NNNN.txt  stage<k>/scan-s<k>-NNNN.h5  stage<k>/plan.json  stage<k>.dag (+ its .status, ...)
    stage<k>.outputs.json
    end_state.json
    summary.json  skymap.h5  skymap.multiorder.fits  skymap.2dllh.fits  plots/*.png  circular.txt  notice.json

The DAG files name their nodes' files relative to the scan directory (DAGMan runs there), so the relative names
are module functions; :class:`ScanLayout` joins them to a directory. Everything here is pure except the
``list_*`` methods, which look at what is on disk.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from skyscan.products.summary import PRODUCT_FILES  # the merge products' names: summary.json lists them

TOP_DAG = "skyscan.dag"
END_STATE = "end_state.json"
PREPARE_RECORD = "prepare.json"
PLAN_RECORD = "plan.json"  # one per stage folder
CONFIG_FILE = "config.yaml"
EVENT_FILE = "event.json"
LOGS_DIR = "logs"
WRAPPER = "skyscan-node"
#: The check the graph declares for a scan node's result file (``module:function``, ``skyscan.local.verify``):
#: the result files' owner verifies them.
RESULT_CHECK = "skyscan.nodes.results:verify_result"
#: What DAGMan writes beside a DAG file it runs: ``<dag><suffix>``.
CONDOR_SUFFIXES = (".status", ".jobstate.log", ".dagman.out")

_STAGE_DIR = re.compile(r"^stage(\d+)$")
_BATCH_FILE = re.compile(r"^batch-(\d+)\.txt$")
_RESULT_FILE = re.compile(r"^scan-s(\d+)-(\d+)\.h5$")
_SCAN_NODE = re.compile(r"scan-s(\d+)-(\d+)\Z")


# ---------------------------------------------------------------------------------------------------------------
# Relative names (what the DAG files spell)
# ---------------------------------------------------------------------------------------------------------------
def batch_name(run_id: int, event_id: int) -> str:
    """The DAGMan batch name (``condor_q`` groups a scan's jobs under it; ``condor_rm`` finds them by it)."""
    return f"skyscan-{run_id}-{event_id}"


def scan_node_name(stage: int, batch: int) -> str:
    return f"scan-s{stage}-{batch:04d}"


def parse_scan_node_name(name: str) -> tuple[int, int] | None:
    """(stage, batch) of a scan node's name, None for any other node."""
    m = _SCAN_NODE.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def stage_node_name(stage: int) -> str:
    """The top-level DAG's SUBDAG node of a later stage (its PRE script plans the stage)."""
    return f"stage{stage}"


def stage_dir(stage: int) -> str:
    return f"stage{stage}"


def stage_dag_name(stage: int) -> str:
    return f"stage{stage}.dag"


def batch_path(stage: int, batch: int) -> str:
    """The batch file (one NESTED pixel index per line) of a scan node."""
    return f"{stage_dir(stage)}/batch-{batch:04d}.txt"


def result_path(stage: int, batch: int) -> str:
    """The result file (``skyscan.nodes.results``) a scan node writes."""
    return f"{stage_dir(stage)}/{scan_node_name(stage, batch)}.h5"


def plan_path(stage: int) -> str:
    return f"{stage_dir(stage)}/{PLAN_RECORD}"


def status_file_name(dag_name: str) -> str:
    """DAGMan's node status file of a DAG (NODE_STATUS_FILE)."""
    return f"{dag_name}.status"


def jobstate_log_name(dag_name: str) -> str:
    """DAGMan's jobstate log of a DAG (JOBSTATE_LOG)."""
    return f"{dag_name}.jobstate.log"


def dagman_out_name(dag_name: str) -> str:
    return f"{dag_name}.dagman.out"


def runstate_name(dag_name: str) -> str:
    """The local executor's run-state file of a DAG (``skyscan.local.runstate.runstate_path`` owns the rule)."""
    from skyscan.local.runstate import runstate_path

    return runstate_path(dag_name).name


def outputs_name(dag_name: str) -> str:
    """The declared outputs of a DAG's nodes (``skyscan.local.verify.outputs_path`` owns the rule)."""
    from skyscan.local.verify import outputs_path

    return outputs_path(dag_name).name


def setup_prefix(outdir_name: str) -> str:
    """The start of the temporary name a scan directory is built under beside it (``.<name>.setup-``)."""
    return f".{outdir_name}.setup-"


def submit_file_name(kind: str) -> str:
    return f"{kind}.sub"


# ---------------------------------------------------------------------------------------------------------------
# One scan directory
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanLayout:
    """The paths of one scan directory ``root`` (nothing is read or created by the path methods)."""

    root: Path

    @classmethod
    def at(cls, outdir: str | os.PathLike[str]) -> ScanLayout:
        return cls(Path(outdir))

    # -- top-level files -------------------------------------------------------------------------------------
    @property
    def top_dag(self) -> Path:
        return self.root / TOP_DAG

    @property
    def event(self) -> Path:
        return self.root / EVENT_FILE

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def logs(self) -> Path:
        return self.root / LOGS_DIR

    @property
    def wrapper(self) -> Path:
        return self.root / WRAPPER

    @property
    def prepare_record(self) -> Path:
        return self.root / PREPARE_RECORD

    @property
    def end_state(self) -> Path:
        return self.root / END_STATE

    @property
    def summary(self) -> Path:
        return self.product("summary")

    @property
    def skymap_h5(self) -> Path:
        return self.product("skymap_h5")

    def product(self, key: str) -> Path:
        """A merge product by its ``skyscan.products.summary.PRODUCT_FILES`` key (KeyError for an unknown key)."""
        return self.root / PRODUCT_FILES[key]

    def submit_file(self, kind: str) -> Path:
        return self.root / submit_file_name(kind)

    # -- per DAG file (skyscan.dag, stage<k>.dag) ------------------------------------------------------------
    def dag(self, dag_name: str) -> Path:
        return self.root / dag_name

    def status_file(self, dag_name: str) -> Path:
        return self.root / status_file_name(dag_name)

    def jobstate_log(self, dag_name: str) -> Path:
        return self.root / jobstate_log_name(dag_name)

    def dagman_out(self, dag_name: str) -> Path:
        return self.root / dagman_out_name(dag_name)

    def condor_files(self, dag_name: str) -> list[Path]:
        """What DAGMan writes beside ``dag_name`` while it runs it."""
        return [self.root / f"{dag_name}{suffix}" for suffix in CONDOR_SUFFIXES]

    def outputs(self, dag_name: str) -> Path:
        return self.root / outputs_name(dag_name)

    def runstate(self, dag_name: str) -> Path:
        return self.root / runstate_name(dag_name)

    # -- per stage -------------------------------------------------------------------------------------------
    def stage_dir(self, stage: int) -> Path:
        return self.root / stage_dir(stage)

    def stage_dag(self, stage: int) -> Path:
        return self.root / stage_dag_name(stage)

    def plan_record(self, stage: int) -> Path:
        return self.root / plan_path(stage)

    def batch_file(self, stage: int, batch: int) -> Path:
        return self.root / batch_path(stage, batch)

    def result_file(self, stage: int, batch: int) -> Path:
        return self.root / result_path(stage, batch)

    # -- what is on disk (I/O) -------------------------------------------------------------------------------
    def list_stages(self) -> list[int]:
        """The stages with a folder, in folder-name order."""
        stages = []
        for path in sorted(self.root.glob("stage*")):
            m = _STAGE_DIR.match(path.name)
            if m and path.is_dir():
                stages.append(int(m.group(1)))
        return stages

    def list_batch_files(self, stage: int) -> list[Path]:
        """Every ``batch-*.txt`` of a stage folder, well named or not (what a re-plan cleans up), in name order."""
        return sorted(self.stage_dir(stage).glob("batch-*.txt"))

    def list_batches(self, stage: int) -> list[int]:
        """The batches planned in a stage (its batch files), in file-name order."""
        return [int(m.group(1)) for m in (_BATCH_FILE.match(p.name) for p in self.list_batch_files(stage)) if m]

    def list_results(self, stage: int) -> list[Path]:
        """The result files present in a stage folder, in file-name order."""
        return [p for p in sorted(self.stage_dir(stage).glob("scan-s*-*.h5")) if _RESULT_FILE.match(p.name)]

    def list_all_results(self) -> list[tuple[int, Path]]:
        """(stage, path) of every result file present, by stage then file name."""
        return [(stage, path) for stage in self.list_stages() for path in self.list_results(stage)]

    def list_rescue_dags(self, stage: int) -> list[Path]:
        """DAGMan's rescue files of a stage's sub-DAG (``stage<k>.dag.rescueNNN``)."""
        return sorted(self.root.glob(f"{stage_dag_name(stage)}.rescue*"))

