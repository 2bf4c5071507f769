# syntax=docker/dockerfile:1
# kiln as an image that runs the daemon (deploy/kubernetes/ uses it). Build it from a checkout where
# `npm ci && npm run build` has run: it takes dist/ and node_modules/ from the context.
#
#   docker build -t kiln .        (or: kiln build -t kiln .)
#   docker run --privileged -d -v kiln-root:/var/lib/kiln -v /run/kiln:/run/kiln kiln
#
# BASE must have node 20.12 or later and a shell; apt-get when it lacks runc.
ARG BASE=node:20-bookworm-slim

# The production node_modules. `npm ci --omit=dev` would fetch from the registry, which a build
# cannot count on (offline builders, no credentials inside the build): the checkout's node_modules
# come in whole and `npm prune` drops the dev dependencies, offline, by package-lock.json. Native
# modules (@napi-rs/xattr) are prebuilt for linux-x64-gnu, so BASE must be glibc-based (Debian).
FROM ${BASE} AS modules
WORKDIR /opt/kiln
COPY package.json package-lock.json ./
COPY node_modules ./node_modules
RUN npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund

FROM ${BASE}
# runc runs every RUN step; xz and bzip2 unpack ADD's compressed archives. A BASE that has runc
# already (built offline) skips apt.
RUN command -v runc >/dev/null 2>&1 || { apt-get update && apt-get install -y --no-install-recommends runc xz-utils bzip2 && rm -rf /var/lib/apt/lists/*; }
WORKDIR /opt/kiln
COPY package.json package-lock.json ./
COPY --from=modules /opt/kiln/node_modules ./node_modules
COPY dist ./dist
ENV KILN_ROOT=/var/lib/kiln
# Content store, snapshots and cache: a volume on a real file system (overlayfs cannot stack its
# upper directories on the container's own overlay; kiln would fall back to copying).
VOLUME /var/lib/kiln
ENTRYPOINT ["node", "/opt/kiln/dist/bin/kiln.js"]
CMD ["daemon"]
