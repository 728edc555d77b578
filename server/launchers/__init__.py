"""Launchers other than the local subprocess one (server/launcher.py), and what they share.

Which launcher a dashboard uses is a setting (`launcher`); the Ray one is imported only when chosen,
so a dashboard without the `ray` extra never loads it.
"""
