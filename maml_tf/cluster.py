"""Several worker processes (``--distribute=multi_worker``): TF_CONFIG, joining, failures.

The cluster is described by the standard ``TF_CONFIG`` environment variable, e.g. for two
hosts (the same JSON on both, only ``task.index`` differs)::

    {"cluster": {"worker": ["host0:12345", "host1:12345"]},
     "task": {"type": "worker", "index": 0}}

Worker 0 (or a ``chief`` task, if the cluster has one) is the chief: it alone writes the
run folder (:func:`maml_tf.distribute.is_chief`).

What this module adds to ``tf.distribute.MultiWorkerMirroredStrategy`` and why:

- :func:`parse_tf_config` checks the JSON before anything is started, so a typo is a clear
  error naming TF_CONFIG, not a TensorFlow traceback or a hang.
- :func:`connect` bounds every wait by ``--worker_timeout``. Left to its defaults, the
  strategy's constructor waits forever for a worker that never starts, and in that wait the
  process ignores SIGTERM (measured with TensorFlow 2.21). The coordination service (which
  the strategy starts) is therefore configured first: a register barrier with the timeout
  (a missing worker gives DeadlineExceeded), heartbeats with the same timeout (a dead worker
  aborts the others' collectives), and a watchdog ends the process should the constructor
  still not return.
- :func:`sync_from_chief`: only the chief reads the run folder (the others need not see it:
  a shared filesystem is not required); after its restore the weights, Adam's state and
  the resume iteration are broadcast with one all-reduce in which only the chief's first
  replica contributes. A chief that cannot restore broadcasts that too, so the others stop
  with a message instead of waiting for it.
- :func:`lost_contact`: the errors TensorFlow raises when a peer dies become one
  :class:`~maml_tf.distribute.DistributeError` naming the cause and how to resume.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import threading

import tensorflow as tf

from maml_tf.distribute import DistributeError

JOBS = ("chief", "worker")
# Beyond --worker_timeout, how long the watchdog lets the strategy's own timeout act first.
WATCHDOG_GRACE_SECONDS = 30.0
WATCHDOG_EXIT_STATUS = 4


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The parsed TF_CONFIG: this task and the training tasks, chief first.

    Example:
        >>> from maml_tf.cluster import parse_tf_config
        >>> cluster = parse_tf_config('{"cluster": {"worker": ["host0:12345", "host1:12345"]},'
        ...                           ' "task": {"type": "worker", "index": 1}}')
        >>> cluster.num_workers, cluster.is_chief
        (2, False)
        >>> cluster.tasks[0]                     # no "chief" task: worker 0 is the chief
        ('worker', 0, 'host0:12345')
    """

    task_type: str
    task_index: int
    tasks: tuple   # ((job, index, address), ...), the chief first

    @property
    def num_workers(self) -> int:
        return len(self.tasks)

    @property
    def is_chief(self) -> bool:
        return self.tasks[0][:2] == (self.task_type, self.task_index)


def parse_tf_config(text: str | None) -> Cluster:
    """The cluster of a TF_CONFIG value; DistributeError naming what is wrong."""
    if not text or not text.strip():
        raise DistributeError(
            "--distribute=multi_worker needs the TF_CONFIG environment variable (the cluster's "
            "addresses and this process's task), e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
            "[\"host0:12345\", \"host1:12345\"]}, \"task\": {\"type\": \"worker\", "
            "\"index\": 0}}'")
    try:
        config = json.loads(text)
    except ValueError as error:
        raise DistributeError(f"TF_CONFIG is not valid JSON ({error}): {text[:200]!r}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise DistributeError("TF_CONFIG must be a JSON object with a \"cluster\" object "
                              "(job name -> list of \"host:port\") and a \"task\" object")
    cluster = config["cluster"]
    other = sorted(set(cluster) - set(JOBS))
    if other:
        raise DistributeError(f"TF_CONFIG's cluster names the job(s) {other}; "
                              f"--distribute=multi_worker trains with 'chief' and 'worker' "
                              f"tasks only")
    tasks, seen = [], {}
    for job in JOBS:
        addresses = cluster.get(job, [])
        if not isinstance(addresses, list) or not all(
                isinstance(a, str) and a.rpartition(":")[2].isdigit() and a.rpartition(":")[0]
                for a in addresses):
            raise DistributeError(f"TF_CONFIG's cluster[{job!r}] must be a list of "
                                  f"\"host:port\" strings, got {addresses!r}")
        for index, address in enumerate(addresses):
            if address in seen:
                raise DistributeError(f"TF_CONFIG names {address} twice ({seen[address]} and "
                                      f"{job} {index}): every task needs its own port")
            seen[address] = f"{job} {index}"
            tasks.append((job, index, address))
    if len(cluster.get("chief", [])) > 1:
        raise DistributeError("TF_CONFIG's cluster has more than one 'chief' task")
    if not tasks:
        raise DistributeError("TF_CONFIG's cluster has no chief: it lists no 'chief' and no "
                              "'worker' task (worker 0 is the chief when there is no 'chief')")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in JOBS \
            or not isinstance(task.get("index"), int):
        raise DistributeError(f"TF_CONFIG's task must be {{\"type\": \"chief\"|\"worker\", "
                              f"\"index\": N}}, got {task!r}")
    if not any(t[:2] == (task["type"], task["index"]) for t in tasks):
        raise DistributeError(f"TF_CONFIG's task {task['type']} {task['index']} is not in its "
                              f"cluster ({', '.join(f'{j} {i}' for j, i, _ in tasks)})")
    return Cluster(task["type"], task["index"], tuple(tasks))


def localhost_tf_configs(count: int) -> list[str]:
    """TF_CONFIG values of a ``count``-worker cluster on 127.0.0.1, one per worker, at ports
    the kernel reports free (bound to port 0, then released): for tests and benchmarks."""
    import socket
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": {"worker": addresses},
                        "task": {"type": "worker", "index": i}}) for i in range(count)]


def connect(worker_timeout: float) -> tf.distribute.Strategy:
    """The MultiWorkerMirroredStrategy of TF_CONFIG, every wait bounded by ``worker_timeout``
    seconds (joining the cluster, and later the silence of a dead peer)."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    spec = parse_tf_config(os.environ.get("TF_CONFIG"))
    milliseconds = int(worker_timeout * 1000)
    ctx = context.context()
    # The strategy keeps a coordination service configured before it (internal API: the
    # public constructor has no timeouts).
    ctx.configure_coordination_service(
        service_type="standalone", service_leader=f"/job:{spec.tasks[0][0]}/replica:0/task:0",
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(
            name=job, num_tasks=sum(t[0] == job for t in spec.tasks))
            for job in JOBS if any(t[0] == job for t in spec.tasks)],
        cluster_register_timeout_in_ms=milliseconds, heartbeat_timeout_in_ms=milliseconds,
        shutdown_barrier_timeout_in_ms=milliseconds)
    config = getattr(ctx, "_coordination_service_config", None)
    if config is not None and hasattr(config, "cluster_register_with_barrier"):
        config.cluster_register_with_barrier = True
    others = ", ".join(f"{j} {i} at {a}" for j, i, a in spec.tasks
                       if (j, i) != (spec.task_type, spec.task_index))
    message = (f"--distribute=multi_worker: could not reach every task of TF_CONFIG within "
               f"--worker_timeout={worker_timeout:g} s (this is {spec.task_type} "
               f"{spec.task_index}; waiting for {others}). Start all of them with the same "
               f"TF_CONFIG cluster, check the addresses and firewalls, or raise "
               f"--worker_timeout")

    def give_up():
        print(f"error: {message}", file=sys.stderr, flush=True)
        os._exit(WATCHDOG_EXIT_STATUS)   # the constructor cannot be interrupted otherwise

    watchdog = threading.Timer(worker_timeout + WATCHDOG_GRACE_SECONDS, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        gpus = tf.config.list_physical_devices("GPU")
        implementation = (tf.distribute.experimental.CommunicationImplementation.AUTO if gpus
                          else tf.distribute.experimental.CommunicationImplementation.RING)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver(),
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=implementation))
    except tf.errors.OpError as error:
        raise DistributeError(f"{message} ({_first_line(error)})") from None
    finally:
        watchdog.cancel()
    return strategy


def _first_line(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    useful = [line for line in lines if "unhealthy" in line or "aborted" in line.lower()]
    return (useful or lines or [type(error).__name__])[0][:300]


def sync_from_chief(strategy: tf.distribute.Strategy, variables, resume_itr: int) -> int:
    """Gives every worker the chief's ``variables`` and ``resume_itr`` (-1: the chief failed
    before training; the others raise). Every worker calls it with the same variables."""
    chief = bool(strategy.extended.should_checkpoint)
    variables = list(variables)

    def on_replica():
        context = tf.distribute.get_replica_context()
        first = tf.logical_and(tf.constant(chief), tf.equal(
            context.replica_id_in_sync_group, 0))
        # Float64 carries every int the run holds (iterations) exactly and all-reduces on CPU.
        values = [tf.cast(v, tf.float64) for v in variables] + [
            tf.constant(float(resume_itr), tf.float64)]
        values = [tf.where(first, x, tf.zeros_like(x)) for x in values]
        return context.all_reduce(tf.distribute.ReduceOp.SUM, values)

    reduced = strategy.run(tf.function(on_replica))
    local = strategy.experimental_local_results(reduced)[0]
    resume = int(local[-1].numpy())
    if resume < 0:
        raise DistributeError("the chief could not prepare the run (its output names the "
                              "reason); this worker stops too")
    for variable, value in zip(variables, local[:-1]):
        variable.assign(tf.cast(value, variable.dtype))
    return resume


@contextlib.contextmanager
def lost_contact(strategy, describe_progress=lambda: ""):
    """Turns the errors of a dead or unreachable peer into one DistributeError."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
            tf.errors.DeadlineExceededError, tf.errors.InternalError) as error:
        raise DistributeError(
            f"--distribute=multi_worker: lost contact with a task of the cluster "
            f"({_first_line(error)}); this process stops. {describe_progress()}Start every "
            f"task again with the same command to resume from the chief's last "
            f"checkpoint") from None
