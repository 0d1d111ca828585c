CREATE DATABASE optuna OWNER serbench;
