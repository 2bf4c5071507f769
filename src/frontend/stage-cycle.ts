// Stages that depend on each other in a circle (COPY --from, RUN --mount from=, FROM), found the
// way BuildKit's validateCircularDependency walks them, so the same stage is named.

/** One stage's dependencies: the stage index depended on, and the line that makes the dependency. */
export type StageDeps = Map<number, number>;

/**
 * The first stage (in Dockerfile order) from which a dependency cycle is reachable, with the line
 * of its dependency that leads into the cycle; undefined when there is none. As in BuildKit, a
 * stage already walked from an earlier one is not walked again.
 */
export function findStageCycle(deps: StageDeps[]): { stage: number; line: number } | undefined {
  const visited = new Set<number>();
  const path = new Set<number>();
  // The line of the first edge on the path that closes the cycle, or undefined.
  const visit = (i: number, firstLine: number | undefined): number | undefined => {
    if (visited.has(i)) return undefined;
    visited.add(i);
    path.add(i);
    for (const [dep, line] of deps[i] ?? new Map<number, number>()) {
      const first = firstLine ?? line;
      if (path.has(dep)) return first;
      const found = visit(dep, first);
      if (found !== undefined) return found;
    }
    path.delete(i);
    return undefined;
  };
  for (let i = 0; i < deps.length; i++) {
    const line = visit(i, undefined);
    if (line !== undefined) return { stage: i, line };
  }
  return undefined;
}
