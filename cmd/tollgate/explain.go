package main

func explain(e *env, args []string) int { return exitUsage }
