#!/bin/sh
# test fixture
sleep 1
