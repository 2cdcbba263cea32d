"""Thread settings: each rank gets its share of the cores; user values win; applied before TF."""

import pytest

from hvdtrain.cluster import topology, world


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("OMP_NUM_THREADS", "KMP_BLOCKTIME", "KMP_AFFINITY", *world.LAUNCHER_VARS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_seed_node_two_workers_gets_22_plus_2(clean_env):
    clean_env.setattr(topology, "node_cores", lambda: 48)
    clean_env.setattr(topology.os, "cpu_count", lambda: 48)
    clean_env.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
    s = topology.decide()
    assert (s.intra_op, s.inter_op, s.kmp_blocktime) == (22, 2, 1) and s.derived


def test_small_machine_one_rank_uses_all_cores(clean_env):
    clean_env.setattr(topology, "node_cores", lambda: 2)
    clean_env.setattr(topology.os, "cpu_count", lambda: 2)
    s = topology.decide()
    assert (s.intra_op, s.inter_op, s.omp_num_threads) == (2, 2, 2)


def test_one_core_rank_gets_one_inter_op_thread(clean_env):
    clean_env.setattr(topology, "node_cores", lambda: 2)
    clean_env.setattr(topology.os, "cpu_count", lambda: 2)
    clean_env.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
    s = topology.decide()
    assert (s.intra_op, s.inter_op, s.omp_num_threads) == (1, 1, 1)


def test_rank_bound_by_launcher_uses_its_mask(clean_env):
    clean_env.setattr(topology, "node_cores", lambda: 24)
    clean_env.setattr(topology.os, "cpu_count", lambda: 48)
    clean_env.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
    assert topology.cores_per_rank() == 24


def test_user_values_win(clean_env):
    s = topology.decide(intra_op=22, inter_op=2, kmp_blocktime=0, kmp_affinity="compact")
    assert (s.intra_op, s.inter_op, s.kmp_blocktime, s.kmp_affinity) == (22, 2, 0, "compact")
    assert not s.derived


def test_apply_refuses_after_tensorflow_is_loaded(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    with pytest.raises(RuntimeError, match="after TensorFlow"):
        topology.apply(topology.decide(1, 1))


def test_communication_defaults_yield_to_the_users_settings(monkeypatch):
    """Horovod's cycle and MPI's polling are set before hvd.init() unless the user set them."""
    for name in (*topology.COMM_DEFAULTS, "HOROVOD_FUSION_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOROVOD_CYCLE_TIME", "3.5")
    line = topology.apply_comm_defaults()
    assert topology.os.environ["HOROVOD_CYCLE_TIME"] == "3.5"
    assert topology.os.environ["OMPI_MCA_mpi_yield_when_idle"] == "1"
    assert line == ("communication: HOROVOD_CYCLE_TIME=3.5, OMPI_MCA_mpi_yield_when_idle=1, "
                    "HOROVOD_FUSION_THRESHOLD=Horovod default")


def test_onednn_is_asked_for_unless_the_user_decided(monkeypatch):
    """TensorFlow alone leaves oneDNN off on CPUs without VNNI/BF16/AMX; hvdtrain turns it on."""
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.delitem(topology.sys.modules, "tensorflow", raising=False)  # another test loaded it
    topology.apply(topology.decide(1, 1))
    assert topology.os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    topology.apply(topology.decide(1, 1))
    assert topology.os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert "TF_ENABLE_ONEDNN_OPTS='1'" not in topology.shell_exports()


def test_onednn_line_names_what_tensorflow_alone_would_do(monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    monkeypatch.setattr(topology, "cpu_flags", lambda: {"avx2", "fma"})  # AMD Zen 3
    assert topology.describe_onednn(True) == (
        "oneDNN: on (TF_ENABLE_ONEDNN_OPTS=1; TensorFlow's own default here: "
        "off (this CPU has no VNNI, BF16 or AMX))")
    monkeypatch.setattr(topology, "cpu_flags", lambda: {"avx512f", "avx512_vnni", "amx_tile"})
    assert topology.describe_onednn(False).endswith("own default here: on (amx_tile, avx512_vnni))")


@pytest.mark.parametrize("flags, limit, supported", [
    ({"avx2", "fma"}, None, False),  # AMD Zen 3: no bfloat16 kernels in oneDNN
    ({"avx512f", "avx512bw"}, None, True),  # Skylake/Cascade Lake: emulated bf16
    ({"avx512f", "avx512bw", "amx_bf16"}, "AVX2", False),  # capped below AVX-512
    ({"avx512f", "avx512bw", "amx_bf16"}, "AVX512_CORE_AMX", True),
])
def test_bf16_needs_avx512_or_amx_in_onednn(monkeypatch, flags, limit, supported):
    monkeypatch.setattr(topology, "cpu_flags", lambda: flags)
    if limit:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert topology.bf16_supported() is supported
    if not supported:
        assert (limit or "avx512bw") in topology.bf16_refusal()


@pytest.mark.parametrize("value, state", [(None, "on"), ("0", "off")])
def test_info_reports_onednn_as_tensorflow_loaded_it(value, state):
    """The variable is exported before TensorFlow loads, and TensorFlow's own answer is printed."""
    import re

    from conftest import cli_env, run

    env = cli_env()
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = value
    res = run(["info"], env=env, check=True)
    assert re.search(rf"^onednn +{state} \(TF_ENABLE_ONEDNN_OPTS={value or 1};", res.stdout, re.M), res.stdout
