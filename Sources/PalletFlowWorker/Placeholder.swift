public enum PalletFlowWorkerModule {}
