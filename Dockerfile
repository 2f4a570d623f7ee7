# One image with both entry points: the operator (node dist/operator/main.js) and the node agent
# (node dist/agent/main.js). The agent needs `wg`, `ip` and, where the kernel has no WireGuard module,
# wireguard-go.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# npm install with the lockfile, not npm ci: npm 11 rejects the lockfiles it writes (see .ci/run)
RUN npm install --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY api api
COPY lib lib
COPY operator operator
COPY agent agent
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update \
  && apt-get install -y --no-install-recommends wireguard-tools wireguard-go iproute2 iputils-ping nftables \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist dist
COPY package.json ./
USER 0
CMD ["node", "dist/operator/main.js"]
