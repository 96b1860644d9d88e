#!/bin/sh
# Leaves its mark in the volume it shares with web, then calls web by its
# service name every two seconds.
echo "worker $HOSTNAME key=$(cat /run/secrets/api_key) mode=$MODE" > "/data/$HOSTNAME.txt"
while true; do
	if wget -q -O /dev/null http://web/; then echo "worker $HOSTNAME reached web"; fi
	sleep 2
done
