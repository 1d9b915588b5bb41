#!/usr/bin/env bash
# Resolves Apache RocketMQ's own name server, broker and client (5.3 and 4.9) from Maven Central
# through tests/java/pom.xml, compiles the Java push-consumer peer, and copies every runtime jar
# into target/rocketmq-java/<version>/lib. Idempotent: a version whose lib directory is complete
# (marked by .complete, written after a successful build newer than the pom and the sources) is
# skipped. Needs OpenJDK 17 and Maven 3.8.
#   scripts/install-java-cluster.sh            # both versions
#   scripts/install-java-cluster.sh 5          # only 5.3 (the default flavour)
set -euo pipefail
cd "$(dirname "$0")/.."

POM=tests/java/pom.xml
declare -A PROFILE=([5]=rocketmq5 [4]=rocketmq4)
declare -A VERSION=([5]=5.3.3 [4]=4.9.7)
wanted=("${@:-5 4}")
# shellcheck disable=SC2206
wanted=(${wanted[*]})

for tool in java mvn; do
  command -v "$tool" >/dev/null || { echo "install-java-cluster: \`$tool\` is not installed (OpenJDK 17 and Maven 3.8 are needed)" >&2; exit 1; }
done

for major in "${wanted[@]}"; do
  version=${VERSION[$major]:?unknown major version $major (5 or 4)}
  lib=target/rocketmq-java/$version/lib
  marker=$lib/.complete
  newest_source=$(find tests/java -type f \( -name '*.java' -o -name pom.xml \) -newer "$marker" 2>/dev/null | head -1 || true)
  if [[ -f $marker && -z $newest_source ]]; then
    echo "install-java-cluster: Apache RocketMQ $version present in $lib ($(ls "$lib" | wc -l) jars); nothing to do"
    continue
  fi
  echo "install-java-cluster: resolving Apache RocketMQ $version (profile ${PROFILE[$major]}) into $lib"
  start=$SECONDS
  rm -f "$marker"
  mvn -q -B -Dstyle.color=never -f "$POM" -P "${PROFILE[$major]}" package
  [[ -f $lib/rocketmq-broker-$version.jar && -f $lib/rmq-wasm-java-peer.jar ]] || {
    echo "install-java-cluster: $lib is incomplete after mvn package" >&2
    exit 1
  }
  touch "$marker"
  echo "install-java-cluster: Apache RocketMQ $version ready in $((SECONDS - start)) s ($(ls "$lib" | wc -l) jars)"
done
