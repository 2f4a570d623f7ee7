# One image with both entry points: the operator (node dist/operator/main.js) and the node agent
# (node dist/agent/main.js), plus the kubectl plugin as one bundled file (/usr/local/bin/kubectl-sealmesh).
# The agent needs `wg`, `ip` and, where the kernel has no WireGuard module, wireguard-go. The Node.js release
# is the one pinned in hack/node/VERSION (a unit test keeps the two in step).
FROM node:24.22.3-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY hack/bundle.mjs hack/bundle.mjs
COPY api api
COPY lib lib
COPY operator operator
COPY agent agent
COPY cmd cmd
RUN npm run build && npm prune --omit=dev

FROM node:24.22.3-bookworm-slim
RUN apt-get update \
  && apt-get install -y --no-install-recommends wireguard-tools wireguard-go iproute2 iputils-ping nftables \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist dist
COPY --from=build /src/dist/kubectl-sealmesh.cjs /usr/local/bin/kubectl-sealmesh
COPY package.json ./
USER 0
CMD ["node", "dist/operator/main.js"]
