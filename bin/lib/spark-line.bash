# Sourced by the scripts in bin/: which Spark line to build and run for, and where that line's build lives.
#
# The line comes from the option `--spark 3.5|4` (spark_line_option takes it out of the arguments) or from
# STAGECRAFT_SPARK; the default is 3.5. Versions are read from the parent pom.xml, where each is written once.
# Sets SPARK_LINE, SCALA_BINARY, SPARK_VERSION, RAPIDS_VERSION, MVN_LINE (the Maven flag that selects the line),
# TARGET (jobs' build folder), JAR (the shaded jar), CLASSPATH_FILE (Spark and Hadoop, as a cluster provides them)
# and SPARK_JVM_FLAGS (what a JVM that runs a Spark driver needs on Java 17), and exports STAGECRAFT_SPARK so that
# the scripts this one calls pick the same line.

spark_line_pom_property() {
  local value
  value="$(sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$ROOT/pom.xml" | head -1)"
  if [[ -z "$value" ]]; then
    echo "$(basename "$0"): cannot read <$1> from $ROOT/pom.xml" >&2
    exit 1
  fi
  printf '%s' "$value"
}

# Removes `--spark X` / `--spark=X` from the arguments; the rest are left in SPARK_LINE_ARGS.
spark_line_option() {
  SPARK_LINE_ARGS=()
  while (( $# )); do
    case "$1" in
      --spark) [[ $# -ge 2 ]] || { echo "$(basename "$0"): --spark needs a value: 3.5 or 4" >&2; exit 2; }
        STAGECRAFT_SPARK="$2"; shift 2 ;;
      --spark=*) STAGECRAFT_SPARK="${1#--spark=}"; shift ;;
      *) SPARK_LINE_ARGS+=("$1"); shift ;;
    esac
  done
}

spark_line_init() {
  SPARK_LINE="${STAGECRAFT_SPARK:-3.5}"
  case "$SPARK_LINE" in
    3.5|3) SPARK_LINE=3.5; SCALA_BINARY=2.12
      SPARK_VERSION="$(spark_line_pom_property spark35.version)"
      RAPIDS_VERSION="$(spark_line_pom_property rapids35.version)"
      LINE_JVM_FLAGS="" ;;
    4) SCALA_BINARY=2.13
      SPARK_VERSION="$(spark_line_pom_property spark4.version)"
      RAPIDS_VERSION="$(spark_line_pom_property rapids4.version)"
      LINE_JVM_FLAGS="$(spark_line_pom_property spark4.jvm.flags)" ;;
    *) echo "$(basename "$0"): unknown Spark line '$SPARK_LINE' (--spark or STAGECRAFT_SPARK): expected 3.5 or 4" >&2
      exit 2 ;;
  esac
  export STAGECRAFT_SPARK="$SPARK_LINE"
  MVN_LINE="-Dspark.line=$SPARK_LINE"
  local version
  version="$(sed -n '0,/<version>/s:.*<version>\(.*\)</version>.*:\1:p' "$ROOT/pom.xml")"
  TARGET="$ROOT/jobs/target/scala-$SCALA_BINARY"
  JAR="$TARGET/stagecraft-jobs_$SCALA_BINARY-$version-shaded.jar"
  CLASSPATH_FILE="$TARGET/spark-classpath.txt"
  SPARK_JVM_FLAGS="$(spark_line_pom_property spark.jvm.flags) $LINE_JVM_FLAGS"
}
