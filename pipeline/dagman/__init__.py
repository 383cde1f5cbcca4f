"""dagman"""
