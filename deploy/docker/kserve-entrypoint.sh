#!/bin/sh
# KServe entrypoint (installed as modelyard-kserve in the image): push the model that KServe's
# storage initializer put in $MODEL_DIR into a local registry as $MODEL_NAME, alias production,
# then exec `modelyard serve` on that registry with the model preloaded (ready only once warm).
# Arguments are passed on to `modelyard serve` (e.g. --http-port 8080 --grpc-port 8081).
#
#   MODEL_NAME    the model's name (required; the ServingRuntime passes the InferenceService's)
#   MODEL_DIR     a model file, or a directory holding a modelyard.json (pushed whole) or exactly
#                 one model file: .onnx .skops .ubj .json .txt (.pkl .pickle .joblib only with
#                 MODELYARD_ALLOW_PICKLE=true); default /mnt/models
#   REGISTRY_DIR  the local registry (default: a new directory under $TMPDIR or /tmp)
set -eu

me=kserve-entrypoint
die() {
    echo "$me: error: $*" >&2
    exit 2
}

[ -n "${MODEL_NAME:-}" ] || die "MODEL_NAME is not set (the model's name, e.g. {{.Name}})"
MODEL_DIR=${MODEL_DIR:-/mnt/models}

is_model_file() {
    lower=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
    case $lower in
        *.onnx | *.skops | *.ubj | *.json | *.txt | *.pkl | *.pickle | *.joblib) return 0 ;;
        *) return 1 ;;
    esac
}

if [ -f "$MODEL_DIR" ]; then
    model=$MODEL_DIR
elif [ ! -d "$MODEL_DIR" ]; then
    die "MODEL_DIR $MODEL_DIR does not exist"
elif [ -f "$MODEL_DIR/modelyard.json" ]; then
    model=$MODEL_DIR
else
    model=
    found=
    count=0
    for file in "$MODEL_DIR"/*; do
        if [ ! -f "$file" ] || ! is_model_file "$file"; then
            continue
        fi
        count=$((count + 1))
        model=$file
        found="$found ${file##*/}"
    done
    if [ "$count" -eq 0 ]; then
        die "no servable model in $MODEL_DIR: expected a modelyard.json or one model file" \
            "(.onnx, .skops, XGBoost .ubj/.json, LightGBM .txt)"
    fi
    if [ "$count" -gt 1 ]; then
        die "$count model files in $MODEL_DIR ($found ): keep one, or add a modelyard.json"
    fi
fi

if [ -z "${REGISTRY_DIR:-}" ]; then
    REGISTRY_DIR=$(mktemp -d "${TMPDIR:-/tmp}/modelyard-kserve.XXXXXX")
fi
echo "$me: pushing $model as $MODEL_NAME@production into $REGISTRY_DIR" >&2
if ! modelyard push "$model" --name "$MODEL_NAME" --alias production --registry "$REGISTRY_DIR"
then
    echo "$me: error: modelyard push $model failed (see above)" >&2
    exit 1
fi
exec modelyard serve --registry "$REGISTRY_DIR" --host 0.0.0.0 --preload "$MODEL_NAME" "$@"
