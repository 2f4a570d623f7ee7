#!/usr/bin/env bash
# Placeholder for npm scripts whose issue has not landed yet: says so and fails, never fakes success.
echo "sealmesh: '$1' is not yet implemented" >&2
exit 1
