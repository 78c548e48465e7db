"""facegen.world"""
