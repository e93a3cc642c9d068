"""Sequence methods: two gloo processes against one process on the same global batch.

The WAE divergences are batch statistics (MMD between the batch of codes and prior samples, the
aggregate action posterior), so the two ranks must all-gather their codes; the adversarial and
KL terms are per-sequence means that DDP's gradient averaging makes global.
"""

import functools
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from science_helpers import one_thread

from tcwae.config import TrainConfig
from tcwae.data import small_sprite_videos
from tcwae.trainer import Trainer

WORLD_SIZE = 2
BASE = {
    "dataset": "sprite_videos",
    "steps": 1,
    "batch_size": 4,
    "report_every": 1,
    "beta": 3.0,
    "gamma": 2.0,
    "ds": 4,
    "dz": 3,
    "rnn_hidden": 16,
    "precision": "float32",  # bf16 rounds differently for batches of 2 and 4
}
CASES = {
    "rwae_mmd": {"method": "rwae_mmd"},
    "rwae_mmd_actions": {"method": "rwae_mmd", "num_actions": 3},
    "rwae_gan": {"method": "rwae_gan"},
    "dsvae": {"method": "dsvae", "num_actions": 2},
    "rwae_mmd_local": {"method": "rwae_mmd", "mws_scope": "local"},
}


@functools.cache
def videos():
    return small_sprite_videos((2, 2, 1, 2, 2))


def first_step(cfg: TrainConfig) -> dict:
    """Losses reported at step 1 and the gradients of that step (left in .grad)."""
    trainer = Trainer(cfg, videos())
    reports = []
    trainer.train(on_report=lambda step, losses: reports.append(losses))
    grads = {name: p.grad.clone() for name, p in trainer.objective.named_parameters()}
    return {"losses": reports[0], "grads": grads}


def run_rank(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        results = {
            name: first_step(TrainConfig.from_dict({**BASE, **case}))
            for name, case in CASES.items()
        }
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("sequence_ddp")
    mp.spawn(run_rank, args=(free_port(), str(out_dir)), nprocs=WORLD_SIZE, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]


@pytest.mark.parametrize("case", [name for name in CASES if name != "rwae_mmd_local"])
def test_first_step_equals_single_process_on_the_global_batch(ddp_results, case):
    with one_thread():
        single = first_step(TrainConfig.from_dict({**BASE, **CASES[case]}))
    for rank_results in ddp_results:
        distributed = rank_results[case]
        assert distributed["losses"].keys() == single["losses"].keys()
        for term, value in single["losses"].items():
            assert distributed["losses"][term] == pytest.approx(value, rel=1e-5, abs=1e-5), term
        assert distributed["grads"].keys() == single["grads"].keys()
        for name, grad in single["grads"].items():
            torch.testing.assert_close(
                distributed["grads"][name], grad, rtol=1e-4, atol=1e-5, msg=name
            )


def test_without_the_gather_each_rank_sees_only_its_own_codes(ddp_results):
    """With mws_scope 'local' the MMD of each rank's two codes differs from the global batch's:
    the equality above is not an accident of the tiny batch."""
    with one_thread():
        single = first_step(TrainConfig.from_dict({**BASE, **CASES["rwae_mmd"]}))
    local = ddp_results[0]["rwae_mmd_local"]["losses"]
    assert local["rec"] == pytest.approx(single["losses"]["rec"], rel=1e-5)
    assert local["static"] != pytest.approx(single["losses"]["static"], abs=1e-3)
    assert local["dynamic"] != pytest.approx(single["losses"]["dynamic"], abs=1e-3)
