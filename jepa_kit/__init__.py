"""jepa_kit: does an LLM-JEPA objective let a GPT-2 trained from scratch answer reversed facts?"""
__version__ = "0.1.0"
