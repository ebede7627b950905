#!/usr/bin/env bash
# The base file system of a Ferry image, built from this machine's JDK and C library (no registry, no daemon):
#   /opt/jre              a jlink runtime with only MODULES
#   /lib*/...             the shared libraries that runtime, JNA's and Ferry's native code and /bin/sh load
#   /bin/sh               dash, so the launcher below and `ferry health` probes can be scripts
#   /usr/local/bin/NAME   the launcher: java with Ferry's JVM flags, the classpath Jib lays out, MAIN_CLASS
#   /etc/passwd, /tmp     what the JVM and JNA expect of a Unix system
# Jib then adds this as the image's first layer on top of `scratch` (see image/pom.xml).
# Usage: rootfs.sh OUT_DIR NAME MAIN_CLASS MODULES CLASSPATH (the program's jars, to find their native libraries)
set -euo pipefail
out="$1" name="$2" main="$3" modules="$4" classpath="$5"
java_home="${JAVA_HOME_FOR_JLINK:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}"

rm -rf "$out"
mkdir -p "$out/opt" "$out/bin" "$out/usr/local/bin" "$out/etc" "$out/tmp" "$out/root"
# No --compress: class loading would inflate lib/modules at every start, and the image layers are gzipped anyway. jlink costs seconds of CPU, so both images
# share one runtime per JDK and module list, in image/target.
cache="$(cd "$(dirname "$0")" && pwd)/target/jre-$( (cat "$java_home/release"; echo "$modules") | sha256sum | cut -c1-16)"
if [ ! -f "$cache/release" ]; then
    mkdir -p "$(dirname "$cache")"
    tmp="$(mktemp -d "$cache.XXXXXX")"
    "$java_home/bin/jlink" --add-modules "$modules" --strip-debug --no-header-files --no-man-pages --output "$tmp/jre"
    mv -T "$tmp/jre" "$cache" 2>/dev/null || true # another build made it meanwhile: the same runtime
    rm -rf "$tmp"
fi
cp -a "$cache" "$out/opt/jre"

cp -L "$(command -v dash)" "$out/bin/sh"

# The x86-64 native libraries inside the jars (Netty's tcnative and epoll, JNA's dispatcher, Ferry's workload),
# which Netty and JNA unpack to /tmp at run time: only to ask ldd what they link (librt, libdl, ...).
natives="$out/../jar-natives"
rm -rf "$natives" && mkdir -p "$natives"
IFS=: read -r -a jars <<< "$classpath"
for jar in "${jars[@]}"; do
    # A cheap look at the zip directory first: `jar` starts a JVM, so only for the few jars with one.
    [ -f "$jar" ] && LC_ALL=C grep -a -q -E 'x86[-_]64[^[:space:]]*\.so' "$jar" || continue
    mapfile -t entries < <("$java_home/bin/jar" tf "$jar" | grep -E 'x86[-_]64.*\.so$' || true)
    [ ${#entries[@]} -gt 0 ] || continue
    mkdir -p "$natives/$(basename "$jar")"
    (cd "$natives/$(basename "$jar")" && "$java_home/bin/jar" xf "$jar" "${entries[@]}")
done

# Everything the dynamic loader will open, at the path it was found here (ldd resolves it the way ld.so will
# inside the image, whose multiarch directories are the same).
copy_lib() {
    local lib="$1"
    case "$lib" in "$out"/*) return 0 ;; esac # the runtime's own libraries
    [ -e "$out$lib" ] && return 0
    mkdir -p "$out$(dirname "$lib")"
    cp -L "$lib" "$out$lib"
}
while read -r lib; do
    copy_lib "$lib"
done < <(find "$out/opt/jre" "$out/bin" "$natives" -type f \( -name '*.so' -o -perm -u+x \) -print0 \
    | xargs -0 ldd 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | sort -u)

# Libraries JNA opens by name, which ldd cannot see: the system's xxHash (page hashes in native code, see PageHashes;
# without it the agent hashes in Java: the same values, several times slower).
for lib in /usr/lib/x86_64-linux-gnu/libxxhash.so.0 /lib/x86_64-linux-gnu/libxxhash.so.0; do
    if [ -e "$lib" ]; then
        copy_lib "$lib"
        break
    fi
done

cat > "$out/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
EOF
cat > "$out/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF

# The JVM flags are ./ferry's (agents run C1-only: see AgentProcess.AGENT_JVM_FLAGS); the classpath is the
# file Jib writes, in Jib's layer order.
cat > "$out/usr/local/bin/$name" <<EOF
#!/bin/sh
set -e
jvm="-XX:+UseParallelGC"
case "\${1:-}" in agent|demo) jvm="\$jvm -XX:TieredStopAtLevel=1" ;; esac
exec /opt/jre/bin/java \$jvm -Djna.tmpdir=/tmp -cp @/app/jib-classpath-file $main "\$@"
EOF
chmod 755 "$out/usr/local/bin/$name"
# Jib insists on a classes directory, and the image modules have no classes of their own.
mkdir -p "$out/../classes"
du -sh "$out" | sed "s|$out|rootfs of $name|"
