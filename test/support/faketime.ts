import { existsSync } from 'node:fs';

/** Debian's libfaketime (package faketime, which .ci/run installs), wherever the architecture puts it; '' when absent (the tests that need it skip). */
export const FAKETIME_LIB = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib'].map((d) => `${d}/faketime/libfaketime.so.1`).find((f) => existsSync(f)) ?? '';
