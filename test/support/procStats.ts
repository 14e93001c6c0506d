/** What a child process uses, from /proc (Linux): for tests that attack a real process and check it held. */
import { readFileSync } from 'node:fs';

/** VmRSS of a process, in MiB */
export function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

/** CPU time a process has used (user + system), in ms (at the kernel's 100 ticks a second) */
export function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
