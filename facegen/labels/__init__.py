"""facegen.labels"""
