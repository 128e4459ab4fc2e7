// Baseline: the bare piscina task the host's worker path is compared with (same payload, same work).
export default function echo(task) {
  return task;
}
