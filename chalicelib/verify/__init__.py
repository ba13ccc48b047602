"""Verifying snapshots: is every version a manifest names still stored, whole and unchanged?"""
