import { defineConfig } from 'vitest/config';

// Two projects: `unit` needs no root and no lab; `lab` drives the real hosts of `npm run lab -- up`
// (real sshd, real torchrun) one file at a time, since they share the three hosts.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['tests/unit/**/*.test.ts'],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'lab',
          include: ['tests/lab/**/*.test.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          fileParallelism: false,
          sequence: { concurrent: false },
        },
      },
    ],
  },
});
