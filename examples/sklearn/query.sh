#!/bin/sh
# Asks a running server for predictions with curl, through the /predict
# route's instances form:
#
#   examples/sklearn/query.sh [HOST:PORT]      (default localhost:8000)
#
# The wine row is the first of scikit-learn's wine data (cultivar 0).
set -eu
url=${1:-localhost:8000}

curl -sS --fail-with-body -X POST "http://$url/predict" -H 'model_name: wine' \
  -d '{"instances": [[14.23, 1.71, 2.43, 15.6, 127.0, 2.8, 3.06, 0.28, 2.29, 5.64, 1.04, 3.92, 1065.0]]}'
echo
curl -sS --fail-with-body -X POST "http://$url/predict" -H 'model_name: review_sentiment' \
  -d '{"instances": [["great quality, works perfectly"], ["terrible, it broke and never worked"]]}'
echo
