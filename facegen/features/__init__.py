"""facegen.features"""
