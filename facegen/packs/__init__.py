"""facegen.packs"""
