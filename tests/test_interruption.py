"""Interruption, for real: a training process killed mid-epoch resumes from its latest checkpoint, and a checkpoint
write that dies (SIGKILL, a full disk, an exception inside torch.save) never leaves models/model.pt or the resumable
checkpoint missing or truncated.

The checkpoint faults run MONAI's own CheckpointSaver next to ours (scripts.components.checkpoint.AtomicCheckpointSaver) on the
same fault: the stock saver loses the file, which shows that the fault really strikes mid-write. Each fault strikes a
child process forked from the test's own (torch, ignite and MONAI already imported), so that a SIGKILL or a file-size
limit ends or limits that child alone.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import BUNDLE_ROOT, FAST, bundle_cmd, run_bundle

from scripts.components import checkpoint


class Fault:
    """Pickled inside torch.save, after the target file has been opened: dies (SIGKILL) or fails like a full disk."""

    def __init__(self, kind):
        self.kind = kind

    def __reduce__(self):
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(28, "No space left on device (simulated)")


class Weights:
    """A save_dict entry: 1 MB of weights whose value is the epoch, plus a fault from epoch 2 on when asked."""

    def __init__(self, fault=None):
        self.fault, self.epoch, self.arm = fault, 0, False

    def state_dict(self):
        state = {"w": torch.full((250_000,), float(self.epoch))}
        if self.arm and self.fault in ("kill", "raise"):
            state["fault"] = Fault(self.fault)
        return state

    def load_state_dict(self, state):
        self.epoch = int(state["w"][0])


def save_two_epochs(folder, saver_kind, which, fault):
    """Epoch 1 saves normally (weights = 1.0); epoch 2's save (weights = 2.0) meets ``fault``.

    ``saver_kind``: "atomic" (ours) or "stock" (MONAI's). ``which``: "best" (fixed key_metric_filename model.pt, as
    validate#handlers) or "latest" (checkpoint_epoch=N.pt, n_saved=1, as latest_saver). ``fault``: "kill" (SIGKILL
    mid-write), "full" (RLIMIT_FSIZE: the write fails part-way, as on a full disk) or "raise" (an exception while
    torch.save pickles). Prints one JSON line with what happened.
    """
    from ignite.engine import Engine, Events
    from monai.handlers import CheckpointSaver

    weights = Weights(fault)
    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _next(e):  # runs before the saver: handlers fire in the order they were added
        weights.epoch = e.state.epoch
        e.state.metrics["score"] = float(e.state.epoch)  # a better score every epoch: model.pt is replaced
        if e.state.epoch == 2:
            weights.arm = True
            if fault == "full":
                import resource

                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG as an OSError instead of a signal
                resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, resource.RLIM_INFINITY))

    cls = checkpoint.AtomicCheckpointSaver if saver_kind == "atomic" else CheckpointSaver
    if which == "best":
        saver = cls(
            save_dir=folder,
            save_dict={"model": weights},
            save_key_metric=True,
            key_metric_name="score",
            key_metric_filename="model.pt",
        )
    else:
        saver = cls(
            save_dir=folder,
            save_dict={"network": weights, "other": torch.nn.Linear(2, 2)},
            save_interval=1,
            n_saved=1,
            epoch_level=True,
        )
    saver.attach(engine)
    try:
        engine.run([0], max_epochs=2)
        print(json.dumps({"raised": None}), flush=True)
    except Exception as exc:
        print(json.dumps({"raised": type(exc).__name__}), flush=True)


def _fault_child(send, *args):
    """In the forked child: one thread (no OpenMP pool after a fork), save_two_epochs, its output to the parent."""
    torch.set_num_threads(1)
    sys.stdout = io.StringIO()
    try:
        save_two_epochs(*args)
    finally:
        send.send(sys.stdout.getvalue())


def run_fault(folder, saver_kind, which, fault):
    """save_two_epochs in a child process forked from this one; returns (its exit status, what it printed).

    The exit status is the child's: -SIGKILL when the fault killed it mid-write. A fresh interpreter would pay ~10 s of
    imports per fault; the fork has them already."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_fault_child, args=(send, str(folder), saver_kind, which, fault))
    child.start()
    send.close()  # the child holds the only write end: a child killed before sending gives EOF, not a hang
    try:
        output = receive.recv() if receive.poll(300) else ""
    except EOFError:
        output = ""
    child.join(timeout=300)
    assert child.exitcode is not None, "the fault run did not end"
    return child.exitcode, output


def loadable_epochs(folder):
    """{file name: epoch stored in it} for every checkpoint file in ``folder`` that loads (weights only)."""
    found = {}
    for path in sorted(Path(folder).glob("*.pt")):
        try:
            state = torch.load(path, weights_only=True)
        except Exception:
            continue
        w = state["w"] if "w" in state else state["network"]["w"]
        found[path.name] = int(w[0])
    return found


@pytest.mark.parametrize("which", ["best", "latest"])
@pytest.mark.parametrize("fault", ["kill", "full"])
def test_a_checkpoint_write_that_dies_keeps_the_previous_file(tmp_path, which, fault):
    returncode, output = run_fault(tmp_path, "atomic", which, fault)
    if fault == "kill":
        assert returncode == -signal.SIGKILL, output
    else:
        # torch reports the short write as OSError or RuntimeError ("unexpected pos"): either way the save failed
        assert returncode == 0 and '"raised": "' in output, output
    expected = {"model.pt": 1} if which == "best" else {"checkpoint_epoch=1.pt": 1}
    assert loadable_epochs(tmp_path) == expected, sorted(os.listdir(tmp_path))
    assert not [p for p in os.listdir(tmp_path) if not p.endswith(".pt") and not p.startswith(".")]
    if fault == "full":  # the failed write cleaned up its temporary file
        assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("which, fault", [("best", "kill"), ("latest", "full")])
def test_monai_stock_saver_loses_the_file_under_the_same_fault(tmp_path, which, fault):
    """The fault injection is real: MONAI's CheckpointSaver deletes the old file first and writes in place."""
    run_fault(tmp_path, "stock", which, fault)
    assert loadable_epochs(tmp_path) == {}, "MONAI's saver kept a loadable file: the fault did not strike mid-write"


def test_an_exception_inside_torch_save_keeps_the_previous_best_in_process(tmp_path, capsys):
    save_two_epochs(tmp_path, "atomic", "best", "raise")
    assert '"raised": "OSError"' in capsys.readouterr().out
    assert loadable_epochs(tmp_path) == {"model.pt": 1}
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob("*.tmp"))


def test_atomic_saves_replace_the_old_file_only_after_success(tmp_path):
    save_two_epochs(tmp_path, "atomic", "latest", "none")
    assert loadable_epochs(tmp_path) == {"checkpoint_epoch=2.pt": 2}  # n_saved=1 still holds
    save_two_epochs(tmp_path / "best", "atomic", "best", "none")
    assert loadable_epochs(tmp_path / "best") == {"model.pt": 2}
    mode = os.stat(tmp_path / "best" / "model.pt").st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # as a plain file, not the 0600 of a temporary file


def test_resume_refuses_a_damaged_or_foreign_checkpoint(tmp_path):
    from monai.networks.nets import UNet

    net = UNet(3, 1, 2, channels=(4, 8), strides=(2,))
    state = {"network": net}
    with pytest.raises(FileNotFoundError, match="no checkpoint_epoch=N.pt to resume from"):
        checkpoint.resumable(tmp_path, state)
    torch.save({"network": net.state_dict(), "optimizer": {}}, tmp_path / "checkpoint_epoch=3.pt")
    assert checkpoint.resumable(tmp_path, state) == str(tmp_path / "checkpoint_epoch=3.pt")
    with pytest.raises(
        ValueError, match=r"checkpoint_epoch=3.pt: not a resumable checkpoint of this bundle: it lacks trainer"
    ):
        checkpoint.resumable(tmp_path, {"network": net, "trainer": None})
    other = UNet(3, 1, 3, channels=(4, 8), strides=(2,))
    with pytest.raises(ValueError, match="these weights do not fit the bundle's network"):
        checkpoint.resumable(tmp_path, {"network": other})
    raw = (tmp_path / "checkpoint_epoch=3.pt").read_bytes()
    (tmp_path / "checkpoint_epoch=4.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"checkpoint_epoch=4.pt: not a readable PyTorch weights file"):
        checkpoint.resumable(tmp_path, state)


def trainer_epoch(state) -> int:
    """The epoch an ignite trainer state dict records (it stores iterations and the epoch length)."""
    return state["trainer"]["iteration"] // state["trainer"]["epoch_length"]


def epochs_trained(log: str) -> list[int]:
    return sorted({int(e) for e in re.findall(r"Epoch: (\d+)/\d+, Iter: \d+/\d+ -- train_loss", log)})


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_from_the_latest_checkpoint(phantom_dir, tmp_path):
    models, runs = tmp_path / "models", tmp_path / "runs"
    settings = dict(
        bundle_root=BUNDLE_ROOT, dataset_dir=phantom_dir, output_dir=runs, ckpt_dir=models, epochs=2, fold=-1, **FAST
    )  # fold -1: no validation, only the resumable checkpoint matters here; 2 epochs: killed in the last one
    proc = subprocess.Popen(
        bundle_cmd("training", ["train.yaml"], **settings),
        cwd=BUNDLE_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    log = []
    try:
        for line in proc.stdout:
            log.append(line)
            if re.search(r"Epoch: 2/2, Iter: 1/\d+ -- train_loss", line):  # epoch 1 saved, epoch 2 half done
                os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.stdout.close()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(log)[-3000:]
    assert sorted(p.name for p in models.glob("checkpoint_epoch=*.pt")) == ["checkpoint_epoch=1.pt"]
    saved = torch.load(models / "checkpoint_epoch=1.pt", weights_only=True)
    assert trainer_epoch(saved) == 1 and saved["trainer"]["max_epochs"] == 2

    resumed = run_bundle("training", ["train.yaml"], resume="true", **settings)
    assert "resuming from" in resumed.stdout and "checkpoint_epoch=1.pt" in resumed.stdout
    assert epochs_trained(resumed.stdout) == [2], resumed.stdout[-3000:]  # continues at 2, stops at max_epochs
    final = torch.load(models / "checkpoint_epoch=2.pt", weights_only=True)
    assert trainer_epoch(final) == 2 and final["trainer"]["max_epochs"] == 2
    assert final["lr_scheduler"]["last_epoch"] == 2  # the LR schedule continued too (a fresh one would be at 1)


# ----------------------------------------------------------------------------------------------------------------------
# continuing a training run: best score, LR schedule, final validation


def resume_settings(trained, tmp_path, **overrides):
    """A copy of the `trained` fixture's models (3 epochs, T_max 3) and the overrides that resume it."""
    models = tmp_path / "models"
    shutil.copytree(trained["models"], models)
    return models, dict(
        bundle_root=BUNDLE_ROOT,
        dataset_dir=trained["data"],
        output_dir=tmp_path / "runs",
        ckpt_dir=models,
        resume="true",
        **FAST,
        **overrides,
    )


def test_a_worse_validation_after_a_resume_keeps_the_best_weights(resumed):
    """conftest's `resumed` run: `trained` with a best score of 1.0 recorded, which no validation can beat, resumed for
    a 4th epoch (the same run shows the resume itself in tests/test_workflows.py)."""
    models, log = resumed["models"], resumed["log"]
    assert "Epoch[4] Metrics -- val_mean_dice" in log, log[-3000:]  # epoch 4 was validated ...
    assert (models / "model.pt").read_bytes() == resumed["best_before"]  # ... and did not replace the better weights
    assert "Got new best metric" not in log  # the evaluator's own record was restored too
    record = torch.load(models / "checkpoint_epoch=4.pt", weights_only=True)["best_saver"]
    assert [score for score, _ in record["_saved"]] == [1.0]  # the record travels on to the next resume


def test_resuming_a_finished_run_is_refused_with_the_way_to_continue(trained, tmp_path):
    # cache_rate 0: no case is preprocessed into the cache for a run that is refused before its first step
    models, settings = resume_settings(trained, tmp_path, epochs=3, cache_rate=0)
    before = {p.name: p.read_bytes() for p in models.glob("*.pt")}
    proc = run_bundle("training", ["train.yaml"], check=False, **settings)
    assert proc.returncode == 1
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("error: ") and "checkpoint_epoch=3.pt" in last and "already trained 3 of 3 epochs" in last
    assert "--epochs 6" in last
    assert not epochs_trained(proc.stdout)  # ignite would have started over from epoch 1
    assert {p.name: p.read_bytes() for p in models.glob("*.pt")} == before


def test_a_stretched_schedule_continues_on_the_cosine_of_the_new_total():
    def cosine(total):
        net = torch.nn.Linear(2, 2)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)

    planned_opt, planned = cosine(6)  # the schedule of a run planned for 6 epochs from the start
    expected = []
    for _ in range(6):
        planned_opt.step()
        planned.step()
        expected.append(planned_opt.param_groups[0]["lr"])

    first_opt, first = cosine(3)  # a run of 3 epochs, saved and restored ...
    for _ in range(3):
        first_opt.step()
        first.step()
    assert first_opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # its schedule ended at 0
    resumed_opt, resumed = cosine(3)
    resumed_opt.load_state_dict(first_opt.state_dict())
    resumed.load_state_dict(first.state_dict())
    checkpoint.stretch_schedule(resumed, 6)  # ... continued with --epochs 6
    assert resumed_opt.param_groups[0]["lr"] == pytest.approx(expected[2], rel=1e-9)
    got = []
    for _ in range(3):
        resumed_opt.step()
        resumed.step()
        got.append(resumed_opt.param_groups[0]["lr"])
    assert got == pytest.approx(expected[3:], rel=1e-9, abs=1e-15)
    checkpoint.stretch_schedule(resumed, 6)  # same total: nothing changes
    assert resumed.T_max == 6 and resumed_opt.param_groups[0]["lr"] == pytest.approx(expected[5], abs=1e-15)


def validated_epochs(interval: int, max_epochs: int) -> list[int]:
    """The epochs after which ValidateEveryAndLast runs a real MONAI evaluator during a ``max_epochs`` run."""
    from ignite.engine import Engine, Events
    from monai.engines import SupervisedEvaluator

    from scripts.components.training import ValidateEveryAndLast

    batch = {"image": torch.zeros(1, 1, 4), "label": torch.zeros(1, 1, 4)}
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=[batch], network=torch.nn.Identity())
    validated = []
    evaluator.add_event_handler(Events.COMPLETED, lambda e: validated.append(e.state.epoch))
    trainer = Engine(lambda e, b: None)
    ValidateEveryAndLast(validator=evaluator, interval=interval).attach(trainer)
    trainer.run([0], max_epochs=max_epochs)
    return validated


def test_validation_runs_every_interval_and_after_the_last_epoch():
    assert validated_epochs(5, 7) == [5, 7]  # as 402 epochs with interval 5: the last 2 must not go unvalidated
    assert validated_epochs(5, 10) == [5, 10]  # the last epoch is a multiple of the interval: validated once
    assert validated_epochs(5, 1) == [1]  # a 1-epoch run is validated (and so writes model.pt)


def test_a_one_epoch_run_validates_and_writes_the_best_weights(one_epoch):
    """conftest's `one_epoch` run: --epochs 1 --val_interval 5 (tests/test_anywhere.py and tests/test_workflows.py
    check the same run)."""
    log = one_epoch["log"]
    assert log.count("Metrics -- val_mean_dice") == 1, log[-3000:]
    assert sorted(p.name for p in one_epoch["models"].glob("*.pt")) == ["checkpoint_epoch=1.pt", "model.pt"]


def test_a_new_run_replaces_the_checkpoints_an_earlier_run_left(tmp_path):
    from ignite.engine import Engine

    (tmp_path / "checkpoint_epoch=7.pt").write_bytes(b"an earlier run's checkpoint")
    (tmp_path / "notes.pt").write_bytes(b"not a checkpoint of ours")
    net = torch.nn.Linear(2, 2)
    saver = checkpoint.AtomicCheckpointSaver(
        save_dir=str(tmp_path),
        save_dict={"network": net, "other": net},
        save_interval=1,
        n_saved=1,
        epoch_level=True,
        remove_stale=True,
    )
    engine = Engine(lambda e, b: None)
    saver.attach(engine)
    engine.run([0], max_epochs=2)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint_epoch=2.pt", "notes.pt"]


def test_a_checkpoint_without_the_best_score_record_still_resumes(tmp_path, caplog):
    """Checkpoints of bundle versions before 0.2.0 hold no best_saver entry: the resume goes on, and says so."""
    from ignite.engine import Engine

    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)
    trainer = Engine(lambda e, b: None)
    trainer.run([0], max_epochs=2)
    old = {
        "network": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": schedule.state_dict(),
        "trainer": trainer.state_dict(),
    }
    torch.save(old, tmp_path / "checkpoint_epoch=2.pt")

    fresh = Engine(lambda e, b: None)
    fresh.state.max_epochs = 3
    saver = checkpoint.AtomicCheckpointSaver(
        save_dir=str(tmp_path), save_dict={"model": net}, save_key_metric=True, key_metric_filename="model.pt"
    )
    state = {"network": net, "optimizer": optimizer, "lr_scheduler": schedule, "trainer": fresh, "best_saver": saver}
    with caplog.at_level("WARNING"):
        checkpoint.ResumeLoader(tmp_path, state)(fresh)
    assert fresh.state.epoch == 2
    assert "holds no best_saver" in caplog.text
